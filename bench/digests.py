#!/usr/bin/env python3
"""Benchmarks of the signed digests (BENCHMARKS.md, section 12), in one run on
one fresh local moto:

  share   the same M messages drained by `run --drain` twice, without and
          with a digest key (the writer records its manifest and seals what
          closed), then `audit-archiver seal` for the periods left open: the
          CPU sealing adds (user+sys, /usr/bin/time) as a share of the whole,
          and the requests `seal` sends (a loopback proxy counts them).
  read    `seal` over N objects another tool wrote (no manifest): each
          object read back; CPU and requests per 1,000 objects.
  verify  `audit-archiver verify --digests` against a sequential boto3 +
          `cryptography` validator of the same chains
          (tests/python/check_digests.py: list, then one GET per digest and
          per listed object, as a hand-written script would), each with every
          request held `--latency-ms` in a proxy, as a real S3 round trip
          would be. `verify` also does its own object checks (one
          ListObjectVersions per prefix, a second GET per object), which the
          validator does not: the ratio is conservative.

Periods of `--period-secs` (30 s; 1 s with --quick), so digests close while
the benchmark runs; a real deployment's hour means fewer digests (one
PutObject and one signature per tenant and hour) and one listing of the
tenant's objects per hour, whose cost grows with the tenant's archive.

Use bench/digests.sh (builds, then runs this). `--quick` is one tiny run.
"""
import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time

from common import ENV as BASE_ENV
from common import BIN, ROOT, Moto, audit_record, time_report, under_time
from readback import fill

ENV = dict(BASE_ENV)
CHECKER = os.path.join(ROOT, "tests", "python", "check_digests.py")
PYTHON = os.path.join(ROOT, ".venv", "bin", "python")
METHODS = (b"GET", b"PUT", b"HEAD", b"POST", b"DELETE")


def counting_proxy(upstream_port, latency):
    """A loopback TCP proxy in front of moto: holds each request `latency`
    seconds and counts requests by method (a chunk that opens with a method is
    one request's head). Returns (port, counts)."""
    counts = {}
    lock = threading.Lock()
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    listener.listen(256)

    def pump(source, sink, towards_moto):
        try:
            while True:
                chunk = source.recv(65536)
                if not chunk:
                    break
                if towards_moto:
                    method = chunk.split(b" ", 1)[0]
                    if method in METHODS:
                        with lock:
                            counts[method.decode()] = counts.get(method.decode(), 0) + 1
                        if latency:
                            time.sleep(latency)
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
            threading.Thread(target=pump, args=(downstream, upstream, True), daemon=True).start()
            threading.Thread(target=pump, args=(upstream, downstream, False), daemon=True).start()

    threading.Thread(target=serve, daemon=True).start()
    return listener.getsockname()[1], counts


def timed(args, env=None):
    """Runs args under /usr/bin/time: (wall s, cpu s, exit code, stdout)."""
    with tempfile.NamedTemporaryFile("r") as report:
        started = time.monotonic()
        result = subprocess.run(under_time(args, report), env=env or ENV, capture_output=True)
        wall = time.monotonic() - started
        cpu, _ = time_report(report)
    return wall, cpu, result.returncode, result.stdout, result.stderr


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=1000, help="drained through SQS by run")
    parser.add_argument("--objects", type=int, default=5000, help="written directly, as run writes them")
    parser.add_argument("--latency-ms", type=float, default=20, help="per request, for the verify comparison")
    parser.add_argument("--period-secs", type=int, default=30,
                        help="digest period of the share measurement (the drain takes ~50 s)")
    parser.add_argument("--quick", action="store_true", help="100 messages, 200 objects, 5 ms, 1 s periods, once")
    options = parser.parse_args()
    if options.quick:
        options.messages, options.objects, options.latency_ms, options.period_secs = 100, 200, 5, 1
    moto = Moto()
    ENV["AWS_ENDPOINT_URL"] = moto.endpoint
    keys = tempfile.mkdtemp(prefix="audit-archiver-bench-digests-")
    try:
        key, public = os.path.join(keys, "digest.pem"), os.path.join(keys, "digest.pub.pem")
        subprocess.run(["openssl", "genpkey", "-algorithm", "ed25519", "-out", key], check=True)
        subprocess.run(["openssl", "pkey", "-in", key, "-pubout", "-out", public], check=True)
        sealing = ["--digest-key-file", key, "--digest-period-mins", repr(options.period_secs / 60),
                   "--digest-delay-mins", "0"]

        # The same drain twice, into two buckets: without sealing, then with
        # (the writer records its manifest, the last pass seals what closed).
        cpu = {}
        for label, bucket, extra in (("plain", "archive", []), ("sealing", "sealed", sealing)):
            if bucket != "archive":
                moto.s3.create_bucket(Bucket=bucket)
                urls = [moto.sqs.create_queue(QueueName="acme-sealed-prismacloud-auditlog")["QueueUrl"]]
                for start in range(0, options.messages, 10):
                    moto.send(urls[0], [{"Id": str(i), "MessageBody": audit_record(i)}
                                        for i in range(start, min(start + 10, options.messages))])
            else:
                urls = moto.setup(options.messages, 1)
            wall, cpu[label], code, out, err = timed([BIN, "run", "--drain", "--bucket", bucket, "--queue", urls[0],
                                                      "--stats-interval-secs", "0", *extra])
            assert code == 0, err.decode()[-2000:]
            print(f"run --drain ({label}): {options.messages} messages in {wall:.1f} s, CPU {cpu[label]:.2f} s "
                  f"= {cpu[label] / options.messages * 1e6:.0f} us per message", flush=True)
        time.sleep(options.period_secs + 0.2)
        port, counts = counting_proxy(int(moto.endpoint.rsplit(":", 1)[1]), 0)
        proxied = dict(ENV, AWS_ENDPOINT_URL=f"http://127.0.0.1:{port}")
        wall, seal_cpu, code, out, err = timed([BIN, "seal", "--bucket", "sealed", *sealing], proxied)
        assert code == 0, err.decode()[-2000:]
        sealed = json.loads(out)
        total_cpu = cpu["sealing"] + seal_cpu
        share = (total_cpu - cpu["plain"]) / total_cpu
        per_k = {method: round(n * 1000 / options.messages, 1) for method, n in sorted(counts.items())}
        print(f"seal (the periods the drain left open): {sealed['objects_listed']} objects into "
              f"{sealed['digests_written']} digests, CPU {seal_cpu:.2f} s; requests per 1,000 objects {per_k}", flush=True)
        print(f"sealing's share of archiving CPU: {share:.1%} (drain + seal {total_cpu:.2f} s against the plain "
              f"drain's {cpu['plain']:.2f} s, same {options.messages} messages)", flush=True)

        # Objects another tool wrote: no manifest, each read back.
        written = fill(moto.endpoint, "archive", options.objects, 10)
        total = options.messages + written
        time.sleep(options.period_secs + 0.2)
        port, counts = counting_proxy(int(moto.endpoint.rsplit(":", 1)[1]), 0)
        proxied = dict(ENV, AWS_ENDPOINT_URL=f"http://127.0.0.1:{port}")
        wall, read_back_cpu, code, out, err = timed([BIN, "seal", "--bucket", "archive", *sealing], proxied)
        assert code == 0, err.decode()[-2000:]
        sealed = json.loads(out)
        assert sealed["objects_listed"] == total, (sealed, total)
        per_k = {method: round(n * 1000 / total, 1) for method, n in sorted(counts.items())}
        print(f"seal, nothing recorded (every object read back): {total} objects into {sealed['digests_written']} "
              f"digests in {wall:.1f} s, CPU {read_back_cpu:.2f} s = {read_back_cpu / total * 1e6:.0f} us per object; "
              f"requests per 1,000 objects {per_k}", flush=True)

        port, _ = counting_proxy(int(moto.endpoint.rsplit(":", 1)[1]), options.latency_ms / 1000)
        slow = dict(ENV, AWS_ENDPOINT_URL=f"http://127.0.0.1:{port}")
        wall_host, cpu, code, out, err = timed(
            [BIN, "verify", "--bucket", "archive", "--digests", "--public-key", public, "--format", "json"], slow)
        proof = json.loads(out)["digests"]
        assert code == 0 and proof["valid_log_files"] == total, (code, proof["problems"][:3], err.decode()[-2000:])
        print(f"verify --digests: {proof['valid_digest_files']} digests, {total} objects in {wall_host:.1f} s "
              f"(CPU {cpu:.2f} s), every request +{options.latency_ms:g} ms", flush=True)
        started = time.monotonic()
        result = subprocess.run(
            [PYTHON, CHECKER, "--bucket", "archive", "--endpoint-url", slow["AWS_ENDPOINT_URL"], "--public-key", public],
            env=slow, capture_output=True)
        wall_py = time.monotonic() - started
        checked = json.loads(result.stdout)
        assert result.returncode == 0 and checked["valid_log_files"] == total, (result.returncode, checked["problems"][:3])
        print(f"boto3 + cryptography, sequential: the same in {wall_py:.1f} s", flush=True)
        print(f"ratio: verify is {wall_py / wall_host:.1f}x faster than the sequential validator", flush=True)
    finally:
        moto.close()
        subprocess.run(["rm", "-rf", keys])


if __name__ == "__main__":
    sys.exit(main())
