#!/usr/bin/env python3
"""What a user would write instead: the reference Lambda design as a poller.

Per queue, sequentially: receive up to 10 messages, then for each record put
one object under the reference (seed) layout in JST and delete that message,
one request at a time. Like the reference it has no conditional PUT and no
collision handling (two records in the same second overwrite each other); it
exists only to be measured by bench/e2e.sh against `audit-archiver run --drain`.

    boto3_poller.py --endpoint-url URL --bucket B --queue URL [--queue URL ...]
"""
import argparse
import datetime
import json
import time

import boto3

JST = datetime.timezone(datetime.timedelta(hours=9))


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--endpoint-url", required=True)
    parser.add_argument("--bucket", required=True)
    parser.add_argument("--queue", action="append", required=True)
    args = parser.parse_args()
    session = boto3.session.Session(region_name="us-east-1")
    sqs = session.client("sqs", endpoint_url=args.endpoint_url)
    s3 = session.client("s3", endpoint_url=args.endpoint_url)
    started = time.monotonic()
    archived = 0
    for queue_url in args.queue:
        name = queue_url.rsplit("/", 1)[-1]
        tenant = name.split("-", 1)[0]
        while True:
            out = sqs.receive_message(
                QueueUrl=queue_url,
                MaxNumberOfMessages=10,
                WaitTimeSeconds=0,
                MessageSystemAttributeNames=["All"],
            )
            records = out.get("Messages", [])
            if not records:
                break
            for record in records:
                ms = int(record["Attributes"]["ApproximateFirstReceiveTimestamp"])
                t = datetime.datetime.fromtimestamp(ms / 1000, JST)
                key = (
                    f"{tenant}/{t:%Y/%m/%d}/prismacloud-auditlog-{tenant}-"
                    f"{t:%Y%m%d-%H%M%S}.json"
                )
                s3.put_object(Bucket=args.bucket, Key=key, Body=record["Body"].encode())
                sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=record["ReceiptHandle"])
                archived += 1
    print(json.dumps({"archived": archived, "seconds": round(time.monotonic() - started, 3)}))


if __name__ == "__main__":
    main()
