#!/usr/bin/env python3
"""The host's own cost per archived message, against an endpoint that is not
the bottleneck (BENCHMARKS.md, section 3).

moto spends 6-18 ms of CPU per archived message, so against it both Rust
drainers wait and their difference drowns in its noise. This runs them against
`bench-endpoint` (bench/endpoint/: in-memory S3 + SQS in Rust, keep-alive
HTTP/1.1, a few µs per call) instead, interleaved:

  host   audit-archiver run --drain (the product, default settings; warm compile cache)
  bare   host/examples/bare_loop.rs: the same SDK calls, no component (ceiling)

Every run gets a fresh endpoint on a free loopback port, a bucket and
--tenants queues (--shape standard, fifo or mixed) loaded with N audit records
by boto3 (SendMessageBatch), then one drainer runs to completion. Measured:
the drainer's user+sys CPU (wait4 rusage, µs resolution), its wall time, and
the endpoint's CPU meanwhile (/proc/PID/stat), which says which side is the
limit. A run with N = 0 per side gives the fixed start-up cost, so the table
also shows the marginal CPU per message. Afterwards every queue must be empty
and N objects stored.

  bench/endpoint.sh                           # builds, then runs this
  bench/endpoint.sh --messages 20000 --repeat 5 --shape fifo
  bench/endpoint.sh --quick                   # one tiny run of each (CI smoke)
  bench/endpoint.sh --repeat 1 --perf /tmp/profiles   # then perf report -i /tmp/profiles/host-….data
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

import boto3
from botocore.config import Config

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from e2e import BARE, BIN, ENV, ROOT, TICK, body  # noqa: E402

ENDPOINT = os.path.join(ROOT, "target", "release", "bench-endpoint")


def proc_cpu(pid):
    """user+sys seconds of a live process (clock ticks)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


class Endpoint:
    """A fresh bench-endpoint, and boto3 clients for loading and checking."""

    def __init__(self, threads):
        self.proc = subprocess.Popen(
            [ENDPOINT, "--port", "0", "--threads", str(threads)],
            stdout=subprocess.PIPE,
            env=ENV,
            text=True,
        )
        line = self.proc.stdout.readline()
        if not line.startswith("listening on "):
            self.close()
            raise SystemExit(f"bench-endpoint did not start: {line!r}")
        self.url = line.split()[-1]
        session = boto3.session.Session(
            aws_access_key_id="testing", aws_secret_access_key="testing", region_name="us-east-1"
        )
        config = Config(retries={"max_attempts": 1})
        self.sqs = session.client("sqs", endpoint_url=self.url, config=config)
        self.s3 = session.client("s3", endpoint_url=self.url, config=config)

    def close(self):
        self.proc.kill()
        self.proc.wait()

    def setup(self, messages, tenants, shape):
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
            entry = {"Id": str(i), "MessageBody": body(i)}
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
        total = 0
        for url in urls:
            a = self.sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
            total += int(a["ApproximateNumberOfMessages"])
            total += int(a["ApproximateNumberOfMessagesNotVisible"])
        return total

    def objects(self):
        count = 0
        for page in self.s3.get_paginator("list_objects_v2").paginate(Bucket="archive"):
            count += page.get("KeyCount", 0)
        return count


def command(side, endpoint, urls, concurrency, cache_dir):
    if side == "host":
        cmd = [BIN, "run", "--drain", "--bucket", "archive", "--endpoint-url", endpoint.url,
               "--region", "us-east-1", "--concurrency", str(concurrency),
               "--stats-interval-secs", "0", "--cache-dir", cache_dir]
    else:
        cmd = [BARE, "--endpoint-url", endpoint.url, "--bucket", "archive",
               "--concurrency", str(concurrency), "--wait-time-secs", "0"]
    for url in urls:
        cmd += ["--queue", url]
    return cmd


def run(side, messages, tenants, shape, concurrency, threads, cache_dir, perf=None):
    endpoint = Endpoint(threads)
    try:
        urls = endpoint.setup(messages, tenants, shape)
        with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
            endpoint_before = proc_cpu(endpoint.proc.pid)
            started = time.monotonic()
            cmd = command(side, endpoint, urls, concurrency, cache_dir)
            if perf and messages:
                # Sampled on the CPU clock (this VM has no hardware counters).
                cmd = ["perf", "record", "-q", "-e", "cpu-clock", "-F", "2999", "-o",
                       os.path.join(perf, f"{side}-{shape}-{messages}.data"), "--"] + cmd
            proc = subprocess.Popen(cmd, stdout=out, stderr=err, env=ENV)
            _, status, usage = os.wait4(proc.pid, 0)
            wall = time.monotonic() - started
            proc.returncode = os.waitstatus_to_exitcode(status)
            endpoint_cpu = proc_cpu(endpoint.proc.pid) - endpoint_before
            if proc.returncode != 0:
                err.seek(0)
                raise SystemExit(f"{side} failed ({proc.returncode}):\n{err.read().decode()[-3000:]}")
        left, stored = endpoint.depth(urls), endpoint.objects()
        if left != 0 or stored != messages:
            raise SystemExit(f"{side}: {left} messages left, {stored} objects of {messages}")
    finally:
        endpoint.close()
    cpu = usage.ru_utime + usage.ru_stime
    return {
        "side": side,
        "shape": shape,
        "messages": messages,
        "tenants": tenants,
        "wall_s": round(wall, 3),
        "msg_per_s": round(messages / wall),
        "cpu_s": round(cpu, 4),
        "cpu_us_per_msg": round(cpu / messages * 1e6, 1) if messages else None,
        "drainer_cpu_pct": round(100 * cpu / wall, 1),
        "endpoint_cpu_pct": round(100 * endpoint_cpu / wall, 1),
        "endpoint_us_per_msg": round(endpoint_cpu / messages * 1e6, 1) if messages else None,
    }


def table(title, rows, columns):
    print(f"\n### {title}\n")
    print("| " + " | ".join(columns) + " |")
    print("|" + "|".join("---" for _ in columns) + "|")
    for r in rows:
        print("| " + " | ".join(str(r.get(c, "")) for c in columns) + " |")
    sys.stdout.flush()


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=20000)
    parser.add_argument("--tenants", type=int, default=10)
    parser.add_argument("--shape", choices=["standard", "fifo", "mixed"], default="standard")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--threads", type=int, default=1, help="the endpoint's worker threads")
    parser.add_argument("--quick", action="store_true", help="one tiny run of each (CI)")
    parser.add_argument("--json", help="also write every row to this file")
    parser.add_argument("--perf", metavar="DIR",
                        help="record each drainer with `perf record` into DIR (its CPU figures "
                             "then include perf's own: profile, do not compare)")
    args = parser.parse_args()
    if args.quick:
        args.messages, args.tenants, args.repeat, args.shape = 200, 2, 1, "mixed"
    cache_dir = tempfile.mkdtemp(prefix="audit-archiver-bench-cache-")
    os.chmod(cache_dir, 0o700)
    sides = ["host", "bare"]
    # Warm the compile cache (and the page cache) once, unmeasured.
    run("host", 10, 1, "standard", args.concurrency, args.threads, cache_dir)
    rows = []
    for _ in range(args.repeat):
        # Interleaved, so a change in background load hits both sides.
        for side in sides:
            rows.append(run(side, 0, args.tenants, args.shape, args.concurrency, args.threads,
                            cache_dir))
            rows.append(run(side, args.messages, args.tenants, args.shape, args.concurrency,
                            args.threads, cache_dir, args.perf))
    table(f"{args.messages} messages over {args.tenants} {args.shape} queues, "
          f"--concurrency {args.concurrency}: every run", rows, list(rows[0].keys()))
    summary = []
    for side in sides:
        fixed = statistics.median(r["cpu_s"] for r in rows if r["side"] == side and not r["messages"])
        mine = [r for r in rows if r["side"] == side and r["messages"]]
        total = statistics.median(r["cpu_s"] for r in mine)
        summary.append({
            "side": side,
            "median msg/s": statistics.median(r["msg_per_s"] for r in mine),
            "CPU µs/msg": round(total / args.messages * 1e6, 1),
            "start-up CPU ms (N=0)": round(fixed * 1000, 1),
            "marginal CPU µs/msg": round((total - fixed) / args.messages * 1e6, 1),
            "drainer CPU %": statistics.median(r["drainer_cpu_pct"] for r in mine),
            "endpoint CPU %": statistics.median(r["endpoint_cpu_pct"] for r in mine),
            "endpoint µs/msg": statistics.median(r["endpoint_us_per_msg"] for r in mine),
        })
    bare = summary[1]
    for s in summary:
        for key in ["CPU µs/msg", "marginal CPU µs/msg"]:
            s[f"{key.split(' µs')[0]} vs bare"] = (round(s[key] / bare[key], 2)
                                                  if bare[key] > 0 else None)
    table("medians and ratios (same runs)", summary, list(summary[0].keys()))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"rows": rows, "summary": summary}, f, indent=1)


if __name__ == "__main__":
    main()
