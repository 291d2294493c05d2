"""The reference design's Lambda handler, for bench/lambda.py only.

What the Python function this project replaces does (see docs/embedding.md,
"An AWS Lambda handler (Python) that names its keys with the component"):
for each SQS record, the tenant is the queue name up to its first '-', the
key is the `seed` layout in JST from ApproximateFirstReceiveTimestamp, and
one `put_object` stores the body (unconditionally: it overwrites, which is
one of its defects). Run by `awslambdaric` (`python -m awslambdaric
lambda_reference.handler`) under the same Runtime API as the Rust function.
"""
import datetime

import boto3

s3 = boto3.client("s3")  # once per execution environment, as usual
JST = datetime.timezone(datetime.timedelta(hours=9))


def handler(event, context):
    import os

    bucket = os.environ["S3_BUCKET_NAME"]
    for record in event["Records"]:
        tenant = record["eventSourceARN"].rsplit(":", 1)[1].split("-", 1)[0]
        ms = int(record["attributes"]["ApproximateFirstReceiveTimestamp"])
        t = datetime.datetime.fromtimestamp(ms / 1000, JST)
        key = (
            f"{tenant}/{t:%Y}/{t:%m}/{t:%d}/"
            f"prismacloud-auditlog-{tenant}-{t:%Y%m%d-%H%M%S}.json"
        )
        s3.put_object(Bucket=bucket, Key=key, Body=record["body"].encode())
    return {"statusCode": 200}
