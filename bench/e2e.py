#!/usr/bin/env python3
"""End-to-end benchmarks of `audit-archiver run --drain` against a local moto.

Every run gets a fresh moto server on a free loopback port, a new bucket and
queues, and N messages spread over the tenants' queues; then one drainer runs
to completion and is measured: wall time, user+sys CPU and peak RSS of the
drainer (/usr/bin/time), and the CPU moto spent meanwhile (/proc/PID/stat),
which says which side is the limit. Checks afterwards that every queue is
empty (and, for the two Rust drainers, that N objects exist).

Queues are standard, FIFO (the deployed shape: one message group per tenant,
as a forwarder writing one stream would), or mixed (alternating) — --shape.

Drainers:
  host   audit-archiver run --drain (the product, default settings; warm compile cache)
  bare   host/examples/bare_loop.rs: the same SDK calls, no component (ceiling)
  boto3  bench/boto3_poller.py: the reference Lambda design, sequential

Experiments (--experiment, repeatable; default all):
  compare  host vs bare vs boto3, same N, same moto build, --repeat times, for
           each queue shape of --compare-shapes
  daemon   host as a daemon (`run`, no --drain; time until the last object is
           stored) vs host --drain vs boto3, on mixed FIFO + standard queues
  host     host CPU per message (and fixed start-up CPU from an N=0 run),
           peak RSS with 10 tenant queues
  scale    host throughput against --concurrency and number of tenants, per
           queue shape of --scale-shapes

Use bench/e2e.sh (builds, then runs this). `--quick` is one tiny run of each.
"""
import argparse
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time

from botocore.config import Config
from common import (ENV, Moto, cpu_seconds, drainer_command, median_of, private_cache_dir, ratio,
                    table, time_report, under_time)

MOTO_CONFIG = Config(retries={"max_attempts": 10, "mode": "standard"})


def until_archived(moto, proc, messages):
    """Daemon mode: waits until `messages` objects exist, then SIGTERMs the
    host (the child of /usr/bin/time) and waits for it."""
    while moto.objects() < messages:
        if proc.poll() is not None:
            return
        time.sleep(0.05)
    wall = time.monotonic()
    with open(f"/proc/{proc.pid}/task/{proc.pid}/children") as f:
        for child in f.read().split():
            os.kill(int(child), signal.SIGTERM)
    proc.wait()
    return wall


def run(side, messages, tenants, concurrency, cache_dir, shape="standard"):
    """One fresh moto, one drainer to completion (a daemon: until the last
    object is stored), measured."""
    moto = Moto(MOTO_CONFIG)
    try:
        urls = moto.setup(messages, tenants, shape)
        with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err, \
                tempfile.NamedTemporaryFile("r") as report:
            wrapped = under_time(drainer_command(side, moto.endpoint, urls, concurrency, cache_dir),
                                 report)
            moto_before = cpu_seconds(moto.proc.pid)
            started = time.monotonic()
            if side == "host-daemon":
                proc = subprocess.Popen(wrapped, stdout=out, stderr=err, env=ENV)
                last_object = until_archived(moto, proc, messages)
                wall = (last_object or time.monotonic()) - started
            else:
                proc = subprocess.run(wrapped, stdout=out, stderr=err, env=ENV)
                wall = time.monotonic() - started
            moto_cpu = cpu_seconds(moto.proc.pid) - moto_before
            if proc.returncode != 0:
                err.seek(0)
                raise SystemExit(f"{side} failed ({proc.returncode}):\n{err.read().decode()[-3000:]}")
            cpu, max_rss_kib = time_report(report)
        left = moto.depth(urls)
        stored = moto.objects()
        if left != 0 or (side != "boto3" and stored != messages):
            raise SystemExit(f"{side}: {left} messages left, {stored} objects of {messages}")
    finally:
        moto.close()
    return {
        "side": side,
        "shape": shape,
        "messages": messages,
        "tenants": tenants,
        "concurrency": concurrency,
        "wall_s": round(wall, 3),
        "msg_per_s": round(messages / wall, 1),
        "cpu_s": round(cpu, 3),
        "cpu_us_per_msg": round(cpu / messages * 1e6, 1) if messages else None,
        "max_rss_mib": round(max_rss_kib / 1024, 1),
        "drainer_cpu_pct": round(100 * cpu / wall, 1),
        "moto_cpu_s": round(moto_cpu, 3),
        "moto_cpu_pct": round(100 * moto_cpu / wall, 1),
    }


COLUMNS = ["side", "shape", "messages", "tenants", "concurrency", "wall_s", "msg_per_s", "cpu_s",
           "cpu_us_per_msg", "max_rss_mib", "drainer_cpu_pct", "moto_cpu_pct"]


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--experiment", action="append", choices=["compare", "daemon", "host", "scale"])
    parser.add_argument("--messages", type=int, default=300)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--compare-tenants", default="1,10")
    parser.add_argument("--compare-shapes", default="standard,fifo,mixed")
    parser.add_argument("--daemon-tenants", default="7")
    parser.add_argument("--scale-shapes", default="standard,fifo")
    parser.add_argument("--scale-concurrency", default="1,4,10,32,64")
    parser.add_argument("--scale-tenants", default="1,3,10")
    parser.add_argument("--quick", action="store_true", help="one tiny run of each (CI)")
    parser.add_argument("--json", help="also write every row to this file")
    args = parser.parse_args()
    experiments = args.experiment or ["compare", "daemon", "host", "scale"]
    if args.quick:
        args.messages, args.repeat, args.compare_tenants = 10, 1, "2"
        args.compare_shapes, args.daemon_tenants = "mixed", "2"
        args.scale_concurrency, args.scale_tenants, args.scale_shapes = "4", "2", "fifo"
    cache_dir = private_cache_dir()
    rows = []
    try:
        # Warm the compile cache (and the page cache) once, unmeasured.
        run("host", 10, 1, args.concurrency, cache_dir)
        if "compare" in experiments:
            for shape, tenants in [(shape, int(t)) for shape in args.compare_shapes.split(",")
                                   for t in args.compare_tenants.split(",")]:
                results = []
                for _ in range(args.repeat):
                    # Interleaved, so a change in background load hits every side.
                    for side in ["host", "bare", "boto3"]:
                        results.append(run(side, args.messages, tenants, args.concurrency, cache_dir,
                                           shape))
                rows += results
                title = f"compare, {tenants} {shape} tenant queue(s)"
                table(f"{title}: every run", results, COLUMNS)
                summary = []
                for side in ["host", "bare", "boto3"]:
                    mine = [r for r in results if r["side"] == side]
                    summary.append({
                        "side": side,
                        "median msg/s": median_of(mine, "msg_per_s"),
                        "median CPU µs/msg": median_of(mine, "cpu_us_per_msg"),
                        "median drainer CPU %": median_of(mine, "drainer_cpu_pct"),
                        "median moto CPU %": median_of(mine, "moto_cpu_pct"),
                        "median RSS MiB": median_of(mine, "max_rss_mib"),
                    })
                bare, boto = summary[1], summary[2]
                for s in summary:
                    s["msg/s vs bare"] = ratio(s["median msg/s"], bare["median msg/s"])
                    s["CPU/msg vs bare"] = ratio(s["median CPU µs/msg"], bare["median CPU µs/msg"])
                    s["msg/s vs boto3"] = ratio(s["median msg/s"], boto["median msg/s"])
                    s["CPU/msg vs boto3"] = ratio(s["median CPU µs/msg"], boto["median CPU µs/msg"])
                table(f"{title}: medians and ratios (same runs)", summary, list(summary[0].keys()))
        if "daemon" in experiments:
            tenants = int(args.daemon_tenants)
            results = []
            for _ in range(args.repeat):
                for side in ["host-daemon", "host", "boto3"]:
                    results.append(run(side, args.messages, tenants, args.concurrency, cache_dir,
                                       "mixed"))
            rows += results
            title = f"daemon and drain, {tenants} mixed FIFO + standard tenant queues"
            table(f"{title}: every run (daemon wall = until the last object is stored)",
                  results, COLUMNS)
            summary = []
            for side in ["host-daemon", "host", "boto3"]:
                mine = [r for r in results if r["side"] == side]
                summary.append({
                    "side": side,
                    "median wall s": median_of(mine, "wall_s"),
                    "median CPU µs/msg": median_of(mine, "cpu_us_per_msg"),
                })
            boto = summary[2]
            for s in summary:
                s["speed-up vs boto3 (wall)"] = ratio(boto["median wall s"], s["median wall s"])
                s["CPU/msg vs boto3"] = ratio(s["median CPU µs/msg"], boto["median CPU µs/msg"])
            table(f"{title}: medians and ratios (same runs)", summary, list(summary[0].keys()))
        if "host" in experiments:
            results = []
            for r in range(args.repeat):
                results.append(run("host", 0, 1, args.concurrency, cache_dir))
                results.append(run("host", args.messages, 1, args.concurrency, cache_dir))
                results.append(run("host", args.messages, 10, args.concurrency, cache_dir))
            rows += results
            table("host: CPU per message, peak RSS (N=0 is the fixed start-up cost)", results, COLUMNS)
            fixed = median_of([r for r in results if r["messages"] == 0], "cpu_s")
            for tenants in [1, 10]:
                mine = [r for r in results if r["messages"] and r["tenants"] == tenants]
                total = median_of(mine, "cpu_us_per_msg")
                marginal = (median_of(mine, "cpu_s") - fixed) / args.messages * 1e6
                print(f"- tenants={tenants}: median CPU {total:.1f} µs/msg including start-up, "
                      f"{marginal:.1f} µs/msg marginal (start-up {fixed * 1000:.0f} ms CPU); "
                      f"peak RSS {max(r['max_rss_mib'] for r in mine)} MiB")
        if "scale" in experiments:
            results = []
            for shape in args.scale_shapes.split(","):
                for tenants in [int(t) for t in args.scale_tenants.split(",")]:
                    for concurrency in [int(c) for c in args.scale_concurrency.split(",")]:
                        results.append(run("host", args.messages, tenants, concurrency, cache_dir,
                                           shape))
            rows += results
            table("scale: host throughput by queue shape, tenants and --concurrency", results,
                  COLUMNS)
    finally:
        shutil.rmtree(cache_dir, ignore_errors=True)
        if args.json:
            with open(args.json, "w") as f:
                json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
