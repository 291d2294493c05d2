#!/usr/bin/env python3
"""What an idle `audit-archiver run` costs: CPU and wake-ups while it long-polls
an empty queue.

For each binary given (default: target/release/audit-archiver), and
--repeat times, interleaved: a fresh moto on a free loopback port, a bucket
and --queues empty tenant queues; `run` with the default 20 s long poll
starts; after --warmup seconds the script reads the process's user+sys CPU
(/proc/PID/stat) and every thread's context switches (/proc/PID/task/*/status),
waits --seconds, reads them again, then stops the process with SIGTERM (it
must exit 0). A context switch of a sleeping thread is a wake-up, so the
per-thread counts say which thread wakes the process.

  bench/idle.sh                                  # builds, then runs this
  .venv/bin/python bench/idle.py --bin OLD --bin target/release/audit-archiver
"""
import argparse
import signal
import subprocess
import tempfile
import time

from common import BIN, ENV, Moto, cpu_seconds, switches


def measure(binary, queues, warmup, seconds):
    moto = Moto()
    cache = tempfile.mkdtemp(prefix="audit-archiver-idle-cache-")
    try:
        moto.s3.create_bucket(Bucket="archive")
        urls = [
            moto.sqs.create_queue(QueueName=f"tenant{t}-prismacloud-auditlog")["QueueUrl"]
            for t in range(queues)
        ]
        cmd = [binary, "run", "--bucket", "archive", "--endpoint-url", moto.endpoint,
               "--region", "us-east-1", "--stats-interval-secs", "0", "--cache-dir", cache]
        for url in urls:
            cmd += ["--queue", url]
        with tempfile.TemporaryFile() as err:
            proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=err, env=ENV)
            time.sleep(warmup)
            if proc.poll() is not None:
                err.seek(0)
                raise SystemExit(f"{binary} exited early:\n{err.read().decode()[-3000:]}")
            cpu0, sw0, moto0 = cpu_seconds(proc.pid), switches(proc.pid), cpu_seconds(moto.proc.pid)
            time.sleep(seconds)
            cpu1, sw1, moto1 = cpu_seconds(proc.pid), switches(proc.pid), cpu_seconds(moto.proc.pid)
            proc.send_signal(signal.SIGTERM)
            code = proc.wait(timeout=60)
            if code != 0:
                err.seek(0)
                raise SystemExit(f"{binary} exited {code}:\n{err.read().decode()[-3000:]}")
    finally:
        moto.close()
    per_thread = {name: sw1.get(name, 0) - sw0.get(name, 0) for name in sw1}
    return {
        "cpu_ms": round((cpu1 - cpu0) * 1000),
        "wakeups": sum(per_thread.values()),
        "per_thread": {k: v for k, v in sorted(per_thread.items()) if v},
        "moto_cpu_ms": round((moto1 - moto0) * 1000),
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--bin", action="append", help="binary to measure (repeatable)")
    parser.add_argument("--queues", type=int, default=1)
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--warmup", type=float, default=5)
    parser.add_argument("--repeat", type=int, default=1)
    args = parser.parse_args()
    binaries = args.bin or [BIN]
    print(f"idle `run`, {args.queues} empty queue(s), {args.seconds:g} s after {args.warmup:g} s")
    print("| binary | CPU ms | per minute | wake-ups | per second | by thread | moto CPU ms |")
    print("|---|---:|---:|---:|---:|---|---:|")
    for _ in range(args.repeat):
        for binary in binaries:
            r = measure(binary, args.queues, args.warmup, args.seconds)
            per_minute = r["cpu_ms"] * 60 / args.seconds
            threads = ", ".join(f"{k} {v}" for k, v in r["per_thread"].items())
            print(f"| {binary} | {r['cpu_ms']} | {per_minute:.0f} | {r['wakeups']} | "
                  f"{r['wakeups'] / args.seconds:.1f} | {threads} | {r['moto_cpu_ms']} |",
                  flush=True)


if __name__ == "__main__":
    main()
