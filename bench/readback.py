#!/usr/bin/env python3
"""Benchmarks of the read commands, `audit-archiver verify` and `query`,
against a local moto, compared with the same work done by a sequential boto3
script (list, then one GET per object), in the same run.

One fresh moto server on a free loopback port; one bucket filled with N
objects of tenant `acme` spread evenly over D days (JST), written the way
`run` writes them (default key template, the same metadata, SHA-256 checksum,
the body an audit record) by parallel boto3 PUTs, which is much faster than
draining N messages through moto's SQS. Then, each under /usr/bin/time (wall,
user+sys CPU, peak RSS):

  verify  audit-archiver verify --from D1 --to Dn --format json
          boto3: per day, list_objects_v2, then get_object with checksum mode
          per object, SHA-256 of the body against the stored checksum, the
          metadata present (sequential, as a hand-written script would)
  query   audit-archiver query --from D1 --to Dn (every record, NDJSON)
          boto3: per day, list, get, json.loads, print (sequential)
  memory  query's peak RSS over 1 day against over all D days (N/D against
          N objects): it must not grow with the range

moto answers from one Python process, which becomes the limit long before
either client does. `--latency-ms L` puts a loopback TCP proxy in front of it
that holds every request L ms before forwarding it, as a real S3 round trip
would (~10-30 ms), for both clients alike.

Use bench/readback.sh (builds, then runs this). `--quick` is one tiny run.
"""
import argparse
import base64
import concurrent.futures
import datetime
import hashlib
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time

from botocore.config import Config
from common import ENV as BASE_ENV
from common import BIN, Moto, aws_client, cpu_seconds, time_report, under_time

JST = datetime.timezone(datetime.timedelta(hours=9))
FIRST_DAY = datetime.date(2025, 6, 1)
# The children's environment: the common one and, once moto is up, its endpoint.
ENV = dict(BASE_ENV)


def client(endpoint):
    return aws_client(
        "s3", endpoint, Config(s3={"addressing_style": "path"}, retries={"max_attempts": 5})
    )


def object_of(n, per_day):
    """The n-th object: key, body, metadata, as `run` writes them."""
    day = FIRST_DAY + datetime.timedelta(days=n // per_day)
    # Spread over the day, 8 s apart.
    local = datetime.datetime.combine(day, datetime.time(), JST) + datetime.timedelta(
        seconds=8 * (n % per_day)
    )
    ms = int(local.timestamp() * 1000)
    message_id = f"{n:08d}-0000-4000-8000-000000000000"
    key = (
        f"acme/{local:%Y/%m/%d}/prismacloud-auditlog-acme-{local:%Y%m%d-%H%M%S}-{message_id}.json"
    )
    body = json.dumps(
        {
            "timestamp": ms,
            "user": f"user{n % 7}@example.com",
            "ipAddress": "203.0.113.7",
            "resourceType": "Account Group",
            "resourceName": f"TEST-{n}",
            "actionType": "CREATE",
            "action": f"'user{n % 7}@example.com'(with role 'System Admin':'System Admin') created the account group.",
            "result": "Successful",
        },
        separators=(",", ":"),
    ).encode()
    metadata = {
        "sqs-message-id": message_id,
        "sqs-queue": "acme-prismacloud-auditlog",
        "tenant": "acme",
        "archive-time-ms": str(ms),
        "sqs-first-receive-ms": str(ms),
        "sqs-sent-ms": str(ms - 40),
    }
    return key, body, metadata


def fill(endpoint, bucket, objects, days):
    """Writes the objects with 8 threads, one boto3 client each."""
    per_day = objects // days
    clients = {}

    def put(n):
        s3 = clients.setdefault(threading.get_ident(), None) or clients.__setitem__(
            threading.get_ident(), client(endpoint)
        ) or clients[threading.get_ident()]
        key, body, metadata = object_of(n, per_day)
        s3.put_object(
            Bucket=bucket,
            Key=key,
            Body=body,
            ContentType="application/json",
            ChecksumAlgorithm="SHA256",
            ChecksumSHA256=base64.b64encode(hashlib.sha256(body).digest()).decode(),
            Metadata=metadata,
            IfNoneMatch="*",
        )

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        list(pool.map(put, range(per_day * days)))
    return per_day * days


def latency_proxy(upstream_port, latency):
    """A loopback TCP proxy that delays each chunk sent towards moto by
    `latency` seconds (one chunk is one request here); returns its port."""
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    listener.listen(256)

    def pump(source, sink, delay):
        try:
            while True:
                chunk = source.recv(65536)
                if not chunk:
                    break
                if delay:
                    time.sleep(delay)
                sink.sendall(chunk)
        except OSError:
            pass
        finally:
            for end in (source, sink):
                try:
                    end.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def serve():
        while True:
            downstream, _ = listener.accept()
            upstream = socket.create_connection(("127.0.0.1", upstream_port))
            threading.Thread(target=pump, args=(downstream, upstream, latency), daemon=True).start()
            threading.Thread(target=pump, args=(upstream, downstream, 0), daemon=True).start()

    threading.Thread(target=serve, daemon=True).start()
    return listener.getsockname()[1]


def timed(args, stdout):
    """Runs args under /usr/bin/time; returns (wall s, cpu s, peak RSS MiB, exit code)."""
    with tempfile.NamedTemporaryFile("r") as report:
        started = time.monotonic()
        result = subprocess.run(
            under_time(args, report),
            env=ENV,
            stdout=stdout,
            stderr=subprocess.PIPE,
        )
        wall = time.monotonic() - started
        cpu, rss_kib = time_report(report)
    if result.returncode not in (0, 1):
        sys.exit(f"{args[:2]} failed ({result.returncode}): {result.stderr.decode()[-2000:]}")
    return wall, cpu, rss_kib / 1024, result.returncode


def boto3_verify(endpoint, bucket, days):
    """What an operator's script would do, one request at a time."""
    s3 = client(endpoint)
    objects = bad = 0
    for d in range(days):
        prefix = f"acme/{FIRST_DAY + datetime.timedelta(days=d):%Y/%m/%d}/"
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
            for entry in page.get("Contents", []):
                got = s3.get_object(Bucket=bucket, Key=entry["Key"], ChecksumMode="ENABLED")
                body = got["Body"].read()
                digest = base64.b64encode(hashlib.sha256(body).digest()).decode()
                meta = got["Metadata"]
                if got.get("ChecksumSHA256") != digest or not all(
                    name in meta for name in ("sqs-message-id", "sqs-queue", "tenant", "archive-time-ms")
                ):
                    bad += 1
                objects += 1
    return objects, bad


def boto3_query(endpoint, bucket, days, out):
    s3 = client(endpoint)
    records = 0
    for d in range(days):
        prefix = f"acme/{FIRST_DAY + datetime.timedelta(days=d):%Y/%m/%d}/"
        rows = []
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
            for entry in page.get("Contents", []):
                got = s3.get_object(Bucket=bucket, Key=entry["Key"])
                record = json.loads(got["Body"].read())
                rows.append((record["timestamp"], entry["Key"], record))
        rows.sort(key=lambda r: r[:2])
        for _, key, record in rows:
            out.write(json.dumps({"key": key, "record": record}) + "\n")
            records += 1
    return records


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--objects", type=int, default=10_000)
    parser.add_argument("--days", type=int, default=10)
    parser.add_argument("--latency-ms", type=float, default=0, help="added to every request (a proxy)")
    parser.add_argument("--quick", action="store_true", help="200 objects over 2 days, once")
    options = parser.parse_args()
    if options.quick:
        options.objects, options.days = 200, 2
    moto = Moto()
    endpoint = moto.endpoint
    ENV["AWS_ENDPOINT_URL"] = endpoint
    try:
        bucket = "readback-bench"
        s3 = client(endpoint)
        s3.create_bucket(Bucket=bucket)
        s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
        started = time.monotonic()
        n = fill(endpoint, bucket, options.objects, options.days)
        print(f"filled {n} objects over {options.days} days in {time.monotonic() - started:.1f} s", flush=True)
        if options.latency_ms:
            port = latency_proxy(int(endpoint.rsplit(":", 1)[1]), options.latency_ms / 1000)
            endpoint = f"http://127.0.0.1:{port}"
            ENV["AWS_ENDPOINT_URL"] = endpoint
            print(f"every request now waits {options.latency_ms:g} ms in a proxy", flush=True)
        last_day = FIRST_DAY + datetime.timedelta(days=options.days - 1)
        span = ["--from", str(FIRST_DAY), "--to", str(last_day)]
        results = {}

        before = cpu_seconds(moto.proc.pid)
        with tempfile.TemporaryFile("w+b") as out:
            wall, cpu, rss, code = timed([BIN, "verify", "--bucket", bucket, *span, "--format", "json"], out)
            out.seek(0)
            report = json.load(out)
        assert code == 0 and report["objects"] == n and not report["findings"], (code, report["objects"], report["findings"][:3])
        results["verify"] = (n / wall, cpu, rss)
        busy = (cpu_seconds(moto.proc.pid) - before) / wall
        print(f"verify  host : {n} objects in {wall:.2f} s = {n / wall:.0f} objects/s, CPU {cpu:.2f} s, peak RSS {rss:.1f} MiB; moto busy {busy:.0%}", flush=True)
        before = cpu_seconds(moto.proc.pid)
        started = time.monotonic()
        checked, bad = boto3_verify(endpoint, bucket, options.days)
        wall_b = time.monotonic() - started
        assert checked == n and bad == 0, (checked, bad)
        results["verify-boto3"] = n / wall_b
        busy = (cpu_seconds(moto.proc.pid) - before) / wall_b
        print(f"verify  boto3: {n} objects in {wall_b:.2f} s = {n / wall_b:.0f} objects/s; moto busy {busy:.0%}", flush=True)
        before = cpu_seconds(moto.proc.pid)

        with tempfile.TemporaryFile("w+b") as out:
            wall, cpu, rss, code = timed([BIN, "query", "--bucket", bucket, "--tenant", "acme", *span], out)
            out.seek(0)
            records = sum(1 for _ in out)
        assert code == 0 and records == n, (code, records)
        results["query"] = (n / wall, cpu, rss)
        busy = (cpu_seconds(moto.proc.pid) - before) / wall
        print(f"query   host : {n} records in {wall:.2f} s = {n / wall:.0f} records/s, CPU {cpu:.2f} s, peak RSS {rss:.1f} MiB; moto busy {busy:.0%}", flush=True)
        before = cpu_seconds(moto.proc.pid)
        started = time.monotonic()
        with open(os.devnull, "w") as sink:
            got = boto3_query(endpoint, bucket, options.days, sink)
        wall_b = time.monotonic() - started
        assert got == n
        results["query-boto3"] = n / wall_b
        busy = (cpu_seconds(moto.proc.pid) - before) / wall_b
        print(f"query   boto3: {n} records in {wall_b:.2f} s = {n / wall_b:.0f} records/s; moto busy {busy:.0%}", flush=True)

        with open(os.devnull, "wb") as sink:
            _, _, rss_day, _ = timed(
                [BIN, "query", "--bucket", bucket, "--tenant", "acme", "--from", str(FIRST_DAY), "--to", str(FIRST_DAY)],
                sink,
            )
        print(
            f"memory: query peak RSS {rss_day:.1f} MiB over 1 day ({n // options.days} objects), "
            f"{results['query'][2]:.1f} MiB over {options.days} days ({n} objects)",
            flush=True,
        )
        print(
            f"ratios (host / boto3 sequential): verify {results['verify'][0] / results['verify-boto3']:.1f}x, "
            f"query {results['query'][0] / results['query-boto3']:.1f}x",
            flush=True,
        )
    finally:
        moto.close()


if __name__ == "__main__":
    main()
