#!/usr/bin/env python3
"""Lambda-mode benchmark (BENCHMARKS.md, section 6): the packaged Rust
function (`target/lambda/x86_64/bootstrap`, with and without its precompiled
`router.cwasm`) against the reference design's Python handler
(bench/lambda_reference.py, boto3, one put_object per record) run by
`awslambdaric`, both under the same Lambda Runtime API served here on
loopback and the same local S3 + SQS server.

Runtime API: the documented interface (AWS Lambda Developer Guide, "Using the
Lambda runtime API for custom runtimes"): GET /2018-06-01/runtime/invocation/next
with the Lambda-Runtime-* headers, POST .../invocation/{id}/response|error,
POST /2018-06-01/runtime/init/error.

Measured per function:
  init     process start -> its first GET .../invocation/next, median of --cold runs
           with the files in the page cache (every start after the first)
  init, cold page cache
           the same after `echo 3 > /proc/sys/vm/drop_caches` before each start
           (root only; --no-drop-caches skips it): what a new execution
           environment pays, whose package is read from its own storage
  warm     event submitted -> response received, one batch of 10 SQS records
           (real messages received from the server), median of --batches
  cpu      user+sys CPU of the function process per record over the warm batches
  rss      peak RSS (VmHWM) after the warm batches

Endpoint: moto (the default), or with --endpoint bench the in-memory S3 + SQS
of bench/endpoint/ (bench/endpoint.sh builds it), which answers in a few µs
on kept-alive connections: moto's own slowness and the connections it closes
then stop counting in either function's CPU (section 3 says why).

Use: scripts/package-lambda.sh && .venv/bin/python bench/lambda.py [--quick]
     [--endpoint moto|bench]
     [--also LABEL=DIR ...]   (another packaged bootstrap in DIR, measured in
                               the same run for an A/B of a change)
"""
import argparse
import http.server
import json
import os
import queue
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid

from botocore.config import Config
from common import ENV, ROOT, Moto, cpu_seconds, ratio
from endpoint import ENDPOINT, Endpoint

PACKAGE = os.path.join(ROOT, "target", "lambda", "x86_64")
PYTHON = os.path.join(ROOT, ".venv", "bin", "python")


class RuntimeApi:
    """The Runtime API on 127.0.0.1 (one function process at a time)."""

    def __init__(self):
        self.events = queue.Queue()
        self.answers = {}
        self.answered = threading.Condition()
        self.first_next = None
        api = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def reply(self, status, body=b"{}", headers=()):
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                for name, value in headers:
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self):
                if self.path != "/2018-06-01/runtime/invocation/next":
                    return self.reply(404)
                if api.first_next is None:
                    api.first_next = time.monotonic()
                request_id, body, deadline_ms = api.events.get()
                self.reply(
                    200,
                    body,
                    [
                        ("Lambda-Runtime-Aws-Request-Id", request_id),
                        ("Lambda-Runtime-Deadline-Ms", str(deadline_ms)),
                        (
                            "Lambda-Runtime-Invoked-Function-Arn",
                            "arn:aws:lambda:us-east-1:123456789012:function:bench",
                        ),
                        ("Lambda-Runtime-Trace-Id", "Root=1-00000000-000000000000000000000000"),
                    ],
                )

            def do_POST(self):
                length = int(self.headers.get("Content-Length", 0))
                body = self.rfile.read(length)
                parts = self.path.split("/")
                # /2018-06-01/runtime/invocation/{id}/response|error
                if len(parts) == 6 and parts[3] == "invocation":
                    with api.answered:
                        api.answers[parts[4]] = (parts[5], body, time.monotonic())
                        api.answered.notify_all()
                    return self.reply(202)
                if self.path == "/2018-06-01/runtime/init/error":
                    print("init error:", body.decode(), file=sys.stderr)
                    return self.reply(202)
                self.reply(404)

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.address = "127.0.0.1:%d" % self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def invoke(self, event):
        request_id = str(uuid.uuid4())
        deadline_ms = int(time.time() * 1000) + 60_000
        started = time.monotonic()
        self.events.put((request_id, json.dumps(event).encode(), deadline_ms))
        with self.answered:
            while request_id not in self.answers:
                if not self.answered.wait(timeout=60):
                    raise RuntimeError("no answer within 60 s")
            kind, body, at = self.answers.pop(request_id)
        if kind != "response":
            raise RuntimeError("invocation failed: %s" % body.decode())
        return at - started, json.loads(body)


def peak_rss_mib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def drop_page_cache():
    """Empties the page cache, so the next start reads its files from disk."""
    os.sync()
    with open("/proc/sys/vm/drop_caches", "w") as f:
        f.write("3\n")


def function_command(kind, workdir):
    if kind == "python":
        return [PYTHON, "-m", "awslambdaric", "lambda_reference.handler"], os.path.join(ROOT, "bench")
    return [os.path.join(workdir, "bootstrap")], workdir


def start(kind, workdir, endpoint, bucket):
    """Starts a function process against a Runtime API of its own (a killed
    process's pending `next` must not take a later event)."""
    api = RuntimeApi()
    command, cwd = function_command(kind, workdir)
    env = {
        **ENV,
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_LAMBDA_RUNTIME_API": api.address,
        "AWS_LAMBDA_FUNCTION_NAME": "bench",
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "128",
        "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
        "LAMBDA_TASK_ROOT": cwd,
        "S3_BUCKET_NAME": bucket,
        "PYTHONPATH": os.path.join(ROOT, "bench"),
        "RUST_LOG": "warn",
    }
    started = time.monotonic()
    process = subprocess.Popen(
        command, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    while api.first_next is None:
        if process.poll() is not None:
            raise RuntimeError("%s exited during init" % kind)
        time.sleep(0.0005)
    return process, api, (api.first_next - started) * 1000


def measure(kind, workdir, endpoint, sqs, s3, queue_url, arn, args):
    bucket = "bench-%s-%s" % (kind.replace("_", "-"), uuid.uuid4().hex[:8])
    s3.create_bucket(Bucket=bucket)
    inits, cold_cache_inits = [], []
    for _ in range(args.cold):
        process, _, init_ms = start(kind, workdir, endpoint, bucket)
        inits.append(init_ms)
        process.kill()
        process.wait()
    for _ in range(args.cold if args.drop_caches else 0):
        drop_page_cache()
        process, _, init_ms = start(kind, workdir, endpoint, bucket)
        cold_cache_inits.append(init_ms)
        process.kill()
        process.wait()
    process, api, _ = start(kind, workdir, endpoint, bucket)
    warm, cpu_before = [], None
    for batch in range(args.batches + 1):
        for n in range(10):
            sqs.send_message(
                QueueUrl=queue_url,
                MessageBody=json.dumps({"timestamp": 1750991540913 + n, "user": "bench@example.com",
                                        "actionType": "CREATE", "result": "Successful", "n": batch}),
            )
        messages = []
        while len(messages) < 10:
            messages += sqs.receive_message(
                QueueUrl=queue_url, MaxNumberOfMessages=10 - len(messages),
                VisibilityTimeout=60, AttributeNames=["All"],
            ).get("Messages", [])
        event = {"Records": [{
            "messageId": m["MessageId"], "receiptHandle": m["ReceiptHandle"], "body": m["Body"],
            "attributes": m["Attributes"], "messageAttributes": {}, "md5OfBody": m["MD5OfBody"],
            "eventSource": "aws:sqs", "eventSourceARN": arn, "awsRegion": "us-east-1",
        } for m in messages]}
        if batch == 1:
            cpu_before = cpu_seconds(process.pid)
        seconds, response = api.invoke(event)
        if batch >= 1:
            warm.append(seconds * 1000)
        failed = {f["itemIdentifier"] for f in response.get("batchItemFailures", [])}
        assert not failed, response
        for m in messages:
            sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=m["ReceiptHandle"])
    cpu = cpu_seconds(process.pid) - cpu_before
    rss = peak_rss_mib(process.pid)
    process.kill()
    process.wait()
    return {
        "function": kind,
        "init_ms_median": round(statistics.median(inits), 1),
        "init_ms_all": [round(x, 1) for x in inits],
        "init_ms_cold_cache_median": (round(statistics.median(cold_cache_inits), 1)
                                      if cold_cache_inits else None),
        "init_ms_cold_cache_all": [round(x, 1) for x in cold_cache_inits],
        "warm_batch_ms_median": round(statistics.median(warm), 2),
        "cpu_ms_per_record": round(cpu * 1000 / (args.batches * 10), 3),
        "peak_rss_mib": round(rss, 1),
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cold", type=int, default=9, help="cold starts per function")
    parser.add_argument("--batches", type=int, default=100, help="warm batches of 10 per function")
    parser.add_argument("--no-drop-caches", dest="drop_caches", action="store_false",
                        help="skip the cold page cache starts (they need root)")
    parser.add_argument("--quick", action="store_true", help="one tiny run of each (smoke)")
    parser.add_argument("--endpoint", choices=["moto", "bench"], default="moto",
                        help="the S3 + SQS server: moto, or bench/endpoint/'s in-memory one")
    parser.add_argument("--also", action="append", default=[], metavar="LABEL=DIR",
                        help="also measure the package in DIR (bootstrap, router.cwasm) as LABEL")
    args = parser.parse_args()
    if args.quick:
        args.cold, args.batches, args.drop_caches = 1, 1, False
    if args.drop_caches and not os.access("/proc/sys/vm/drop_caches", os.W_OK):
        sys.exit("dropping the page cache needs root: run as root or pass --no-drop-caches")
    if not os.path.exists(os.path.join(PACKAGE, "bootstrap")):
        sys.exit("run scripts/package-lambda.sh first")

    if args.endpoint == "bench":
        if not os.path.exists(ENDPOINT):
            sys.exit("run bench/endpoint.sh --quick (or cargo build --release -p bench-endpoint) first")
        server = Endpoint(threads=1)
        endpoint = server.url
    else:
        server = Moto(Config(retries={"max_attempts": 10}))
        endpoint = server.endpoint
    sqs, s3 = server.sqs, server.s3
    queue_url = sqs.create_queue(QueueName="acme-prismacloud-auditlog")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]

    bare = tempfile.mkdtemp(prefix="lambda-bench-")
    shutil.copy(os.path.join(PACKAGE, "bootstrap"), bare)
    functions = [("rust", PACKAGE), ("rust_compile_at_init", bare), ("python", None)]
    for also in args.also:
        label, _, workdir = also.partition("=")
        if not os.path.exists(os.path.join(workdir, "bootstrap")):
            sys.exit("--also %s: no bootstrap in %s" % (also, workdir))
        functions.append((label, workdir))
    results = []
    try:
        for kind, workdir in functions:
            results.append(measure(kind, workdir, endpoint, sqs, s3, queue_url, arn, args))
            print(json.dumps(results[-1]), flush=True)
    finally:
        server.close()
        shutil.rmtree(bare, ignore_errors=True)
    rust, python = results[0], results[2]
    print(json.dumps({
        "warm_batch_python_over_rust": ratio(python["warm_batch_ms_median"], rust["warm_batch_ms_median"]),
        "cpu_per_record_python_over_rust": ratio(python["cpu_ms_per_record"], rust["cpu_ms_per_record"], 1),
        "init_python_over_rust": ratio(python["init_ms_median"], rust["init_ms_median"], 1),
        "init_cold_cache_python_over_rust": (
            ratio(python["init_ms_cold_cache_median"], rust["init_ms_cold_cache_median"], 1)
            if args.drop_caches else None),
    }))


if __name__ == "__main__":
    main()
