"""Quick-start helper: seeds a local S3/SQS endpoint and shows the archive.

    quickstart.py seed ENDPOINT BUCKET   -> prints the two queue URLs
    quickstart.py show ENDPOINT BUCKET   -> prints the archive as a tree

Uses boto3 (installed with moto into .venv) against the local endpoint only.
"""

import json
import sys
import time

import boto3

SAMPLE_USERS = ["alice@example.com", "bob@example.com", "carol@example.com"]


def clients(endpoint):
    kwargs = dict(
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    return boto3.client("s3", **kwargs), boto3.client("sqs", **kwargs)


def audit_log(user, timestamp_ms, action, resource):
    return json.dumps(
        {
            "timestamp": timestamp_ms,
            "user": user,
            "ipAddress": "203.0.113.7",
            "resourceType": "Account Group",
            "resourceName": resource,
            "actionType": action,
            "action": f"'{user}'(with role 'System Admin':'System Admin') {action.lower()}d the account group.",
            "result": "Successful",
        },
        separators=(",", ":"),
    )


def seed(endpoint, bucket):
    s3, sqs = clients(endpoint)
    s3.create_bucket(Bucket=bucket)
    acme = sqs.create_queue(
        QueueName="acme-prismacloud-auditlog.fifo",
        Attributes={"FifoQueue": "true", "ContentBasedDeduplication": "true"},
    )["QueueUrl"]
    globex = sqs.create_queue(QueueName="globex-prismacloud-auditlog")["QueueUrl"]
    now = int(time.time() * 1000)
    second = now - now % 1000
    # Two logs of one tenant in the same second: the reference design kept only one.
    for n, (queue, offset) in enumerate([(acme, 100), (acme, 700), (acme, 2300), (globex, 0), (globex, 1500)]):
        body = audit_log(SAMPLE_USERS[n % 3], second + offset, "CREATE" if n % 2 else "UPDATE", f"TEST-{n}")
        extra = {"MessageGroupId": "prismacloud"} if queue.endswith(".fifo") else {}
        sqs.send_message(QueueUrl=queue, MessageBody=body, **extra)
    print(acme)
    print(globex)


def show(endpoint, bucket):
    s3, _ = clients(endpoint)
    keys = sorted(o["Key"] for o in s3.list_objects_v2(Bucket=bucket).get("Contents", []))
    print(f"s3://{bucket}/")
    previous = []
    for key in keys:
        parts = key.split("/")
        common = 0
        while common < len(previous) - 1 and common < len(parts) - 1 and previous[common] == parts[common]:
            common += 1
        for depth in range(common, len(parts)):
            print("    " * (depth + 1) + parts[depth] + ("" if depth == len(parts) - 1 else "/"))
        previous = parts
    print(f"{len(keys)} objects")


def tamper(endpoint, bucket):
    """Rewrites one archived log as an intruder with write access would:
    an unconditional PUT keeping its metadata. Prints the key."""
    s3, _ = clients(endpoint)
    key = next(o["Key"] for o in s3.list_objects_v2(Bucket=bucket, Prefix="acme/")["Contents"])
    head = s3.head_object(Bucket=bucket, Key=key)
    forged = audit_log("mallory@example.com", int(time.time() * 1000), "DELETE", "TEST-0")
    s3.put_object(Bucket=bucket, Key=key, Body=forged.encode(), Metadata=head["Metadata"],
                  ContentType="application/json")
    print(key)


if __name__ == "__main__":
    command, endpoint, bucket = sys.argv[1:4]
    {"seed": seed, "show": show, "tamper": tamper}[command](endpoint, bucket)
