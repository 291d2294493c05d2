#!/usr/bin/env python3
"""Hundreds of tenant queues in one `audit-archiver run` (BENCHMARKS.md,
section 11): memory, idle CPU and wake-ups, requests per idle queue, and the
time from send to stored while a few queues are busy and the rest idle.

For each --queues count (default 10, then 300), interleaved --repeat times:
a fresh `bench-endpoint` (bench/endpoint/: in-memory S3 + SQS, one thread) on
a free loopback port, a bucket and that many empty `tenantNNN-prismacloud-auditlog`
queues; `audit-archiver run --queue-prefix tenant` with its default settings
(20-s long polls, discovery every 300 s) starts. Once every queue has been
polled (the endpoint counts requests: `GET /_bench/stats`) and --warmup more
seconds have passed:

  idle   for --idle-seconds: the process's on-CPU time (/proc/PID/task/*/schedstat),
         every thread's context switches (a sleeping thread's switch is a
         wake-up), the requests it sent by kind, and its RSS;
  busy   for --busy-seconds: one SendMessage at a time, evenly paced, to
         --busy queues at --rate messages per second in all (the others stay
         idle); then until every message is stored. Send → stored per message
         is the endpoint's clock at the successful PUT minus SQS's
         SentTimestamp, which the host writes into the object's metadata.

Then SIGTERM (the host must exit 0), and every message must be stored exactly
once (objects = messages sent, queues empty).

  bench/queues.sh                      # builds, then runs this
  bench/queues.sh --queues 10 --queues 300 --repeat 2
  bench/queues.sh --quick              # one short run of 20 queues (CI smoke)
"""
import argparse
import glob
import json
import signal
import statistics
import subprocess
import tempfile
import time

from common import BIN, ENV, audit_record, cpu_seconds, private_cache_dir, switches, table
from endpoint import Endpoint

PREFIX = "tenant"


def cpu_ns(pid):
    """On-CPU time of every live thread, ns (/proc/PID/task/*/schedstat): the
    10-ms ticks of /proc/PID/stat cannot tell an idle minute's few ms apart."""
    total = 0
    for task in glob.glob(f"/proc/{pid}/task/*/schedstat"):
        try:
            with open(task) as f:
                total += int(f.read().split()[0])
        except FileNotFoundError:
            continue  # the thread ended
    return total


def memory_kib(pid):
    """(VmRSS, VmHWM) in KiB."""
    values = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(("VmRSS:", "VmHWM:")):
                key, value = line.split()[:2]
                values[key] = int(value)
    return values["VmRSS:"], values["VmHWM:"]


def percentile(values, p):
    """The nearest-rank percentile."""
    ordered = sorted(values)
    return ordered[max(0, -(-len(ordered) * p // 100) - 1)]


def wait_for(condition, timeout, what, proc, required=True):
    """Whether `condition` came true within `timeout` s; if `required`, it must."""
    deadline = time.monotonic() + timeout
    while not condition():
        if proc.poll() is not None:
            raise SystemExit(f"audit-archiver exited ({proc.returncode}) while waiting for {what}")
        if time.monotonic() > deadline:
            if required:
                raise SystemExit(f"timed out after {timeout} s waiting for {what}")
            return False
        time.sleep(0.2)
    return True


def send_paced(endpoint, urls, rate, seconds):
    """SendMessage round the queues at `rate` per second for `seconds`; returns
    the count. Paced against the clock, so a slow send is caught up, not lost."""
    sent, started = 0, time.monotonic()
    total = int(rate * seconds)
    while sent < total:
        due = started + sent / rate
        delay = due - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        endpoint.sqs.send_message(QueueUrl=urls[sent % len(urls)], MessageBody=audit_record(sent))
        sent += 1
    return sent


def measure(binary, queues, busy, rate, warmup, idle_seconds, busy_seconds, cache_dir):
    endpoint = Endpoint(threads=1)
    try:
        endpoint.s3.create_bucket(Bucket="archive")
        urls = [
            endpoint.sqs.create_queue(QueueName=f"{PREFIX}{q:03}-prismacloud-auditlog")["QueueUrl"]
            for q in range(queues)
        ]
        cmd = [binary, "run", "--bucket", "archive", "--queue-prefix", PREFIX,
               "--endpoint-url", endpoint.url, "--region", "us-east-1",
               "--stats-interval-secs", "0", "--cache-dir", cache_dir]
        with tempfile.TemporaryFile() as err:
            started = time.monotonic()
            proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=err, env=ENV)
            try:
                # Every queue polled within a minute: a host that cannot is
                # measured all the same (and says so).
                polled = lambda: endpoint.stats()["requests"].get("ReceiveMessage", 0)
                all_polling_s = (round(time.monotonic() - started, 2)
                                 if wait_for(lambda: polled() >= queues, 60, "", proc, False)
                                 else f"> 60 ({polled()} receives)")
                time.sleep(warmup)

                # Idle: every queue long-polls an empty queue.
                cpu0, sw0, req0 = cpu_ns(proc.pid), switches(proc.pid), endpoint.stats()["requests"]
                time.sleep(idle_seconds)
                cpu1, sw1, req1 = cpu_ns(proc.pid), switches(proc.pid), endpoint.stats()["requests"]
                idle_rss, _ = memory_kib(proc.pid)

                # Busy: a few queues receive a steady flow, the rest stay idle.
                busy_cpu0, busy_req0 = cpu_seconds(proc.pid), endpoint.stats()["requests"]
                sent = send_paced(endpoint, urls[:busy], rate, busy_seconds)
                wait_for(lambda: len(endpoint.stats()["stored_ms"]) >= sent, 900,
                         f"{sent} messages stored", proc)
                busy_cpu1 = cpu_seconds(proc.pid)
                rss, peak_rss = memory_kib(proc.pid)
                after = endpoint.stats()
                latencies, busy_req1 = after["stored_ms"], after["requests"]
                threads = len(sw1)
            finally:
                proc.send_signal(signal.SIGTERM)
                code = proc.wait(timeout=60)
            if code != 0:
                err.seek(0)
                raise SystemExit(f"{binary} exited {code}:\n{err.read().decode()[-3000:]}")
        left, stored = endpoint.depth(urls), endpoint.objects()
        if left != 0 or stored != sent or len(latencies) != sent:
            raise SystemExit(f"{queues} queues: {left} messages left, {stored} objects and "
                             f"{len(latencies)} PUTs of {sent} sent")
    finally:
        endpoint.close()
    wakeups = sum(sw1.get(name, 0) - sw0.get(name, 0) for name in sw1)
    receives = req1.get("ReceiveMessage", 0) - req0.get("ReceiveMessage", 0)
    others = {k: v - req0.get(k, 0) for k, v in req1.items()
              if k != "ReceiveMessage" and v - req0.get(k, 0)}
    return {
        "queues": queues,
        "all polling after s": all_polling_s,
        "threads": threads,
        "idle RSS MiB": round(idle_rss / 1024, 1),
        "idle CPU ms/min": round((cpu1 - cpu0) / 1e6 * 60 / idle_seconds, 1),
        "idle CPU ms/min per queue": round((cpu1 - cpu0) / 1e6 * 60 / idle_seconds / queues, 3),
        "wake-ups/s": round(wakeups / idle_seconds, 1),
        "wake-ups/s per queue": round(wakeups / idle_seconds / queues, 3),
        "receives per idle queue per hour": round(receives / queues * 3600 / idle_seconds),
        "other idle requests": ", ".join(f"{k} {v}" for k, v in others.items()) or "none",
        **(busy_figures(sent, busy_cpu1 - busy_cpu0, busy_req0, busy_req1, latencies)
           if sent else {}),
        "RSS after MiB": round(rss / 1024, 1),
        "peak RSS MiB": round(peak_rss / 1024, 1),
    }


def busy_figures(sent, cpu, requests_before, requests_after, latencies):
    return {
        "busy msgs": sent,
        "busy CPU µs/msg": round(cpu / sent * 1e6),
        # The host's requests per message while busy (the sender's own
        # SendMessage left out): what the bill counts.
        "busy requests per msg": ", ".join(
            f"{k} {(v - requests_before.get(k, 0)) / sent:.2f}" for k, v in requests_after.items()
            if k != "SendMessage" and v - requests_before.get(k, 0)),
        "send→stored p50 ms": percentile(latencies, 50),
        "p99 ms": percentile(latencies, 99),
        "max ms": max(latencies),
        "mean ms": round(statistics.fmean(latencies), 1),
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bin", default=BIN, help="the audit-archiver binary")
    parser.add_argument("--queues", type=int, action="append",
                        help="queue counts to compare (repeatable; default 10 and 300)")
    parser.add_argument("--busy", type=int, default=5, help="queues that receive messages")
    parser.add_argument("--rate", type=float, default=50, help="messages per second, in all")
    parser.add_argument("--warmup", type=float, default=5)
    parser.add_argument("--idle-seconds", type=float, default=60)
    parser.add_argument("--busy-seconds", type=float, default=60, help="0: idle only")
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--quick", action="store_true", help="one short run (CI smoke)")
    parser.add_argument("--json", help="also write every row to this file")
    args = parser.parse_args()
    counts = args.queues or [10, 300]
    if args.quick:
        counts, args.repeat, args.warmup = [20], 1, 1
        args.idle_seconds, args.busy_seconds, args.rate = 3, 2, 20
    cache_dir = private_cache_dir()
    # The first start compiles the component into the cache (and its memory
    # stays with the process): shown once, not mixed into the rows.
    first = measure(args.bin, 1, 1, 10, 0, 1, 1, cache_dir)
    print(f"first start (compiles the component): RSS {first['idle RSS MiB']} MiB, "
          f"peak {first['peak RSS MiB']} MiB", flush=True)
    print(f"`run --queue-prefix {PREFIX}`, default settings; idle {args.idle_seconds:g} s, then "
          f"{args.rate:g} msg/s to {args.busy} queues for {args.busy_seconds:g} s", flush=True)
    rows = []
    for _ in range(args.repeat):
        for queues in counts:
            row = measure(args.bin, queues, min(args.busy, queues), args.rate, args.warmup,
                          args.idle_seconds, args.busy_seconds, cache_dir)
            print(json.dumps(row, ensure_ascii=False), flush=True)
            rows.append(row)
    table("every run", rows, list(dict.fromkeys(k for row in rows for k in row)))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
