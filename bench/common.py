"""What the benchmark scripts in bench/ share: paths, the child environment,
a fresh moto server on a free loopback port, loading audit records into tenant
queues and checking what was archived, the drainer command lines, measuring a
process's CPU, medians, ratios and tables.

The scripts import it as `common` (Python puts a script's own directory, bench/,
first on sys.path), so it works however they are run: bench/X.sh, or
`.venv/bin/python bench/X.py` from the repository root.
"""
import glob
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time

import boto3
from botocore.config import Config

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.join(ROOT, "target", "release", "audit-archiver")
BARE = os.path.join(ROOT, "target", "release", "examples", "bare_loop")
# The host built with the system allocator (bench/endpoint.sh builds it).
BIN_SYSTEM_ALLOC = os.path.join(ROOT, "target", "release", "audit-archiver-system-alloc")
POLLER = os.path.join(ROOT, "bench", "boto3_poller.py")
MOTO = os.path.join(ROOT, ".venv", "bin", "moto_server")
TIME = "/usr/bin/time"
TICK = os.sysconf("SC_CLK_TCK")
REGION = "us-east-1"
# What every child process (drainer, moto) gets: test credentials, one region,
# no instance metadata lookups; nothing else from the caller's environment.
ENV = {
    "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_REGION": REGION,
    "AWS_DEFAULT_REGION": REGION,
    "AWS_EC2_METADATA_DISABLED": "true",
}


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def aws_client(service, endpoint, config=None):
    """A boto3 client for a local endpoint, with the test credentials."""
    return boto3.client(
        service,
        endpoint_url=endpoint,
        region_name=REGION,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        config=config,
    )


def cpu_seconds(pid):
    """user+sys seconds of a live process, all its threads (/proc/PID/stat)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def switches(pid):
    """{thread name: voluntary + involuntary context switches}."""
    counts = {}
    for task in glob.glob(f"/proc/{pid}/task/*"):
        try:
            with open(f"{task}/comm") as f:
                name = f.read().strip()
            with open(f"{task}/status") as f:
                total = sum(int(line.split()[1]) for line in f if "ctxt_switches" in line)
        except FileNotFoundError:
            continue  # the thread ended
        counts[name] = counts.get(name, 0) + total
    return counts


def audit_record(n):
    """The n-th audit record as a Prisma Cloud forwarder sends it (compact JSON)."""
    return json.dumps(
        {
            "timestamp": 1750991540913 + n * 1000,
            "user": "alice@example.com",
            "ipAddress": "203.0.113.7",
            "resourceType": "Account Group",
            "resourceName": f"TEST-{n}",
            "actionType": "CREATE",
            "action": "'alice@example.com'(with role 'System Admin':'System Admin') "
            "created the account group.",
            "result": "Successful",
        },
        separators=(",", ":"),
    )


class ArchiveServer:
    """A local S3 + SQS server (self.proc) and boto3 clients (self.sqs,
    self.s3) to load its queues and check what was archived."""

    proc = sqs = s3 = None

    def close(self):
        self.proc.kill()
        self.proc.wait()

    def __enter__(self):
        return self

    def __exit__(self, *_):
        self.close()

    def setup(self, messages, tenants, shape="standard"):
        """Bucket `archive` and `tenants` queues (standard, fifo, or mixed:
        FIFO for even tenants), with audit records 0..messages-1 dealt round
        the queues; returns the queue URLs."""
        self.s3.create_bucket(Bucket="archive")
        urls = []
        for t in range(tenants):
            fifo = shape == "fifo" or (shape == "mixed" and t % 2 == 0)
            name = f"tenant{t}-prismacloud-auditlog" + (".fifo" if fifo else "")
            attributes = {"FifoQueue": "true"} if fifo else {}
            urls.append(self.sqs.create_queue(QueueName=name, Attributes=attributes)["QueueUrl"])
        batches = {url: [] for url in urls}
        for i in range(messages):
            url = urls[i % tenants]
            entry = {"Id": str(i), "MessageBody": audit_record(i)}
            if url.endswith(".fifo"):
                # One group per tenant: one forwarder, one ordered stream.
                entry["MessageGroupId"] = "prisma"
                entry["MessageDeduplicationId"] = str(i)
            batches[url].append(entry)
            if len(batches[url]) == 10:
                self.send(url, batches[url])
                batches[url] = []
        for url, entries in batches.items():
            if entries:
                self.send(url, entries)
        return urls

    def send(self, url, entries):
        out = self.sqs.send_message_batch(QueueUrl=url, Entries=entries)
        if out.get("Failed"):
            raise SystemExit(f"loading failed: {out['Failed']}")

    def depth(self, urls):
        """Messages left in the queues, visible or in flight."""
        total = 0
        for url in urls:
            a = self.sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
            total += int(a["ApproximateNumberOfMessages"])
            total += int(a["ApproximateNumberOfMessagesNotVisible"])
        return total

    def objects(self, bucket="archive"):
        count = 0
        for page in self.s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
            count += page.get("KeyCount", 0)
        return count


class Moto(ArchiveServer):
    """A fresh moto server on a free loopback port, up when this returns."""

    def __init__(self, config=None):
        self.port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.proc = subprocess.Popen(
            [MOTO, "-H", "127.0.0.1", "-p", str(self.port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env=ENV,
        )
        self.sqs = aws_client("sqs", self.endpoint, config)
        self.s3 = aws_client("s3", self.endpoint, config)
        probe = aws_client("sqs", self.endpoint, Config(retries={"max_attempts": 1}))
        deadline = time.monotonic() + 30
        while True:
            try:
                probe.list_queues()
                return
            except Exception:
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    self.close()
                    raise SystemExit("moto did not start")
                time.sleep(0.1)


def drainer_command(side, endpoint, urls, concurrency, cache_dir):
    """The command line of one drainer against `endpoint`, bucket `archive`:
    host (`run --drain`), host-system-alloc (the same, built with the
    system allocator), host-daemon (`run`), bare (the bare SDK loop) or
    boto3 (the reference design as a poller)."""
    if side in ("host", "host-daemon", "host-system-alloc"):
        # The product's defaults (long-poll wait included), but the bench's
        # concurrency and a private compile cache.
        binary = BIN_SYSTEM_ALLOC if side == "host-system-alloc" else BIN
        cmd = [binary, "run", "--bucket", "archive", "--endpoint-url", endpoint,
               "--region", REGION, "--concurrency", str(concurrency),
               "--stats-interval-secs", "0", "--cache-dir", cache_dir]
        if side in ("host", "host-system-alloc"):
            cmd.append("--drain")
    elif side == "bare":
        cmd = [BARE, "--endpoint-url", endpoint, "--bucket", "archive",
               "--concurrency", str(concurrency), "--wait-time-secs", "0"]
    elif side == "boto3":
        cmd = [sys.executable, POLLER, "--endpoint-url", endpoint, "--bucket", "archive"]
    else:
        raise ValueError(f"unknown drainer {side!r}")
    for url in urls:
        cmd += ["--queue", url]
    return cmd


def private_cache_dir(prefix="audit-archiver-bench-cache-"):
    """A new compile cache directory only this user can read (the host insists)."""
    path = tempfile.mkdtemp(prefix=prefix)
    os.chmod(path, 0o700)
    return path


def under_time(cmd, report):
    """cmd wrapped in /usr/bin/time, writing "user sys maxrss_kib" to report
    (a named temporary file): time reports its own child's rusage, whereas a
    child forked straight from this (large) Python would inherit its peak RSS."""
    return [TIME, "-o", report.name, "-f", "%U %S %M", *cmd]


def time_report(report):
    """(user+sys CPU seconds, peak RSS KiB) from an under_time report."""
    user, system, max_rss_kib = report.read().split()[-3:]
    return float(user) + float(system), int(max_rss_kib)


def median_of(rows, key):
    return statistics.median(r[key] for r in rows)


def ratio(value, reference, digits=2):
    """value / reference, or None when the reference is not above 0 (a tiny run
    can use less CPU than the clock's resolution; a marginal cost can come out
    negative in noise)."""
    return round(value / reference, digits) if reference and reference > 0 else None


def table(title, rows, columns):
    """A Markdown table under a `###` title, flushed."""
    print(f"\n### {title}\n")
    print("| " + " | ".join(columns) + " |")
    print("|" + "|".join("---" for _ in columns) + "|")
    for r in rows:
        print("| " + " | ".join(str(r.get(c, "")) for c in columns) + " |")
    sys.stdout.flush()
