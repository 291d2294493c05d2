"""moto's S3/SQS server, with S3's conditional PutObject made atomic.

Amazon S3 applies `If-None-Match: *` atomically: of two concurrent PUTs to a
new key exactly one succeeds, the other gets 412 (S3 User Guide, "Add
preconditions to S3 operations with conditional requests"). moto 5.2 checks the
condition, then stores the object several steps later, with no lock, on a
threaded server: two PUTs racing for one new key can both succeed, the second
leaving a second version (seen once in the competing-hosts reliability
scenario: one key of 273 same-key races in a run, each racing PUT carrying
`If-None-Match: *`). The archiver's guarantee rests on S3's behaviour, so the
suites test against it: PutObject is serialised, everything else is moto's.
"""

import sys
import threading

from moto.s3.responses import S3Response
from moto.server import main

_PUT_LOCK = threading.Lock()
_put_object = S3Response.put_object


def _atomic_put_object(self):
    with _PUT_LOCK:
        return _put_object(self)


S3Response.put_object = _atomic_put_object

if __name__ == "__main__":
    sys.exit(main())
