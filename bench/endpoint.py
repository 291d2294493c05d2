#!/usr/bin/env python3
"""The host's own cost per archived message, against an endpoint that is not
the bottleneck (BENCHMARKS.md, section 3).

moto spends 6-18 ms of CPU per archived message, so against it both Rust
drainers wait and their difference drowns in its noise. This runs them against
`bench-endpoint` (bench/endpoint/: in-memory S3 + SQS in Rust, keep-alive
HTTP/1.1, a few µs per call) instead, interleaved:

  host   audit-archiver run --drain (the product, default settings; warm compile cache)
  host-system-alloc   the same host built with the system allocator instead of mimalloc
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
import subprocess
import tempfile
import time
import urllib.request

from botocore.config import Config
from common import (ENV, ROOT, ArchiveServer, aws_client, cpu_seconds, drainer_command,
                    median_of, private_cache_dir, ratio, table)

ENDPOINT = os.path.join(ROOT, "target", "release", "bench-endpoint")


# What the bench itself sends to set a run up.
LOADER_REQUESTS = {"CreateBucket", "CreateQueue", "SendMessageBatch"}


class Endpoint(ArchiveServer):
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
        config = Config(retries={"max_attempts": 1})
        self.sqs = aws_client("sqs", self.url, config)
        self.s3 = aws_client("s3", self.url, config)

    def stats(self):
        """What the endpoint has seen (`GET /_bench/stats`): `requests` by
        operation, and `stored_ms`, send → stored of every archived object."""
        with urllib.request.urlopen(f"{self.url}/_bench/stats") as response:
            return json.load(response)

    def requests(self):
        """Every request so far, by operation."""
        return self.stats()["requests"]


def run(side, messages, tenants, shape, concurrency, threads, cache_dir, perf=None):
    endpoint = Endpoint(threads)
    try:
        urls = endpoint.setup(messages, tenants, shape)
        with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
            endpoint_before = cpu_seconds(endpoint.proc.pid)
            started = time.monotonic()
            cmd = drainer_command(side, endpoint.url, urls, concurrency, cache_dir)
            if perf and messages:
                # Sampled on the CPU clock (this VM has no hardware counters).
                cmd = ["perf", "record", "-q", "-e", "cpu-clock", "-F", "2999", "-o",
                       os.path.join(perf, f"{side}-{shape}-{messages}.data"), "--"] + cmd
            proc = subprocess.Popen(cmd, stdout=out, stderr=err, env=ENV)
            _, status, usage = os.wait4(proc.pid, 0)
            wall = time.monotonic() - started
            proc.returncode = os.waitstatus_to_exitcode(status)
            endpoint_cpu = cpu_seconds(endpoint.proc.pid) - endpoint_before
            if proc.returncode != 0:
                err.seek(0)
                raise SystemExit(f"{side} failed ({proc.returncode}):\n{err.read().decode()[-3000:]}")
        requests = endpoint.requests()
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
        # The drainer's requests per message, as the endpoint counted them
        # (the loader's CreateBucket, CreateQueue and SendMessageBatch left out).
        "requests_per_msg": {k: round(v / messages, 3) for k, v in requests.items()
                             if k not in LOADER_REQUESTS} if messages else None,
    }


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
    cache_dir = private_cache_dir()
    sides = ["host", "host-system-alloc", "bare"]
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
        fixed = median_of([r for r in rows if r["side"] == side and not r["messages"]], "cpu_s")
        mine = [r for r in rows if r["side"] == side and r["messages"]]
        total = median_of(mine, "cpu_s")
        summary.append({
            "side": side,
            "median msg/s": median_of(mine, "msg_per_s"),
            "CPU µs/msg": round(total / args.messages * 1e6, 1),
            "start-up CPU ms (N=0)": round(fixed * 1000, 1),
            "marginal CPU µs/msg": round((total - fixed) / args.messages * 1e6, 1),
            "drainer CPU %": median_of(mine, "drainer_cpu_pct"),
            "endpoint CPU %": median_of(mine, "endpoint_cpu_pct"),
            "endpoint µs/msg": median_of(mine, "endpoint_us_per_msg"),
        })
    bare = next(s for s in summary if s["side"] == "bare")
    for s in summary:
        for key in ["CPU µs/msg", "marginal CPU µs/msg"]:
            s[f"{key.split(' µs')[0]} vs bare"] = ratio(s[key], bare[key])
    table("medians and ratios (same runs)", summary, list(summary[0].keys()))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"rows": rows, "summary": summary}, f, indent=1)


if __name__ == "__main__":
    main()
