#!/usr/bin/env python3
"""Benchmark of `audit-archiver backfill` against a straightforward Python
script doing the same (requests + boto3), in the same session, interleaved.

Both read the same fake Prisma Cloud API (served here on 127.0.0.1 with the
documented shapes: POST /login -> token in x-redlock-auth, POST
/audit/api/v1/log with an absolute timeRange, limit and nextPageToken; at most
--api-rate requests per second, 429 beyond) and write to the same moto server
(a fresh bucket per run). Each run is timed from start to exit and checked
afterwards: N objects in the bucket.

    .venv/bin/python bench/backfill.py [--records 3000] [--days 30] [--repeat 2]

Needs target/release/audit-archiver (cargo build --release -p audit-archiver).
"""
import argparse
import datetime
import hashlib
import json
import os
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import requests
from botocore.config import Config
from common import BIN, ENV, Moto, aws_client

START_MS = 1_767_193_200_000  # 2026-01-01T00:00+09:00
DAY_MS = 86_400_000
JST = datetime.timezone(datetime.timedelta(hours=9))
KEY_ID, SECRET = "bench-key-id", "bench-secret"
PATH_STYLE = Config(s3={"addressing_style": "path"})


def make_records(n, days):
    step = days * DAY_MS // n
    out = []
    for i in range(n):
        t = START_MS + i * step + (i * 7919) % max(step, 1)
        out.append((t, json.dumps({
            "timestamp": t, "user": f"user{i % 17}@example.com", "ipAddress": "203.0.113.7",
            "resourceType": "Login", "resourceName": f"console-{i}", "action": "logged in",
            "actionType": "LOGIN", "result": "Successful"})))
    return out


class FakeApi:
    """The documented interface, rate-limited like the real one."""

    def __init__(self, records, rate):
        self.records, self.rate = records, rate
        self.lock = threading.Lock()
        self.recent, self.pages, self.requests, self.throttled = [], {}, 0, 0
        api = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def reply(self, status, body=b""):
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def body(self):
                return json.loads(self.rfile.read(int(self.headers.get("content-length", 0))) or b"{}")

            def do_POST(self):
                request = self.body()
                with api.lock:
                    now = time.monotonic()
                    api.requests += 1
                    api.recent = [t for t in api.recent if now - t < 1.0] + [now]
                    if len(api.recent) > api.rate:
                        api.throttled += 1
                        return self.reply(429)
                if self.path == "/login":
                    ok = request.get("username") == KEY_ID and request.get("password") == SECRET
                    return self.reply(200, b'{"token":"t0k"}') if ok else self.reply(401)
                if self.path != "/audit/api/v1/log" or self.headers.get("x-redlock-auth") != "t0k":
                    return self.reply(401)
                token = request.get("nextPageToken")
                if token:
                    start, end, offset = api.pages.pop(token)
                else:
                    value = request["timeRange"]["value"]
                    start, end, offset = value["startTime"], value["endTime"], 0
                matching = [r for t, r in api.records if start <= t <= end]
                page = matching[offset:offset + int(request.get("limit", 100))]
                body = '{"value":[' + ",".join(page) + "]"
                if offset + len(page) < len(matching):
                    token = f"p{len(api.pages)}-{offset}-{start}"
                    api.pages[token] = (start, end, offset + len(page))
                    body += f',"nextPageToken":"{token}"'
                self.reply(200, (body + "}").encode())

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


def python_backfill(api_url, endpoint, bucket, days):
    """What one would write by hand: log in, page day by day, PUT each record."""
    s3 = aws_client("s3", endpoint, PATH_STYLE)
    http = requests.Session()

    def post(path, body, token=None):
        while True:
            headers = {"x-redlock-auth": token} if token else {}
            r = http.post(api_url + path, json=body, headers=headers)
            if r.status_code == 429:
                time.sleep(float(r.headers.get("Retry-After", "0.2")))
                continue
            r.raise_for_status()
            return r.json()

    token = post("/login", {"username": KEY_ID, "password": SECRET})["token"]
    for day in range(days):
        start = START_MS + day * DAY_MS
        page_token = None
        while True:
            body = {"timeRange": {"type": "absolute", "value": {"startTime": start, "endTime": start + DAY_MS - 1}},
                    "limit": 500}
            if page_token:
                body["nextPageToken"] = page_token
            page = post("/audit/api/v1/log", body, token)
            for record in page["value"]:
                raw = json.dumps(record, separators=(",", ":"))
                digest = hashlib.sha256(json.dumps(record, sort_keys=True, separators=(",", ":")).encode()).hexdigest()
                when = datetime.datetime.fromtimestamp(record["timestamp"] / 1000, JST)
                key = f"acme/{when:%Y/%m/%d}/prismacloud-auditlog-acme-{when:%Y%m%d-%H%M%S}-api-{digest}.json"
                try:
                    s3.put_object(Bucket=bucket, Key=key, Body=raw.encode(), IfNoneMatch="*",
                                  ContentType="application/json")
                except s3.exceptions.ClientError as e:
                    if e.response["ResponseMetadata"]["HTTPStatusCode"] != 412:
                        raise
            page_token = page.get("nextPageToken")
            if not page_token:
                break


def count(s3, bucket):
    total = 0
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        total += sum(1 for o in page.get("Contents", []) if not o["Key"].startswith("_state/"))
    return total


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=3000)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--api-rate", type=int, default=10)
    args = parser.parse_args()
    if not os.path.exists(BIN):
        sys.exit(f"{BIN} missing: cargo build --release -p audit-archiver")
    records = make_records(args.records, args.days)
    api = FakeApi(records, args.api_rate)
    moto = Moto(PATH_STYLE)
    endpoint, s3 = moto.endpoint, moto.s3
    last_day = (datetime.datetime.fromtimestamp(START_MS / 1000, JST) + datetime.timedelta(days=args.days - 1))
    results = {"audit-archiver": [], "python": []}
    try:
        for round_ in range(args.repeat):
            for name in ("audit-archiver", "python"):
                bucket = f"bench-{name.replace('_', '-')}-{round_}-{os.getpid()}"
                s3.create_bucket(Bucket=bucket)
                before = api.requests
                started = time.monotonic()
                if name == "audit-archiver":
                    env = dict(ENV, AWS_ENDPOINT_URL=endpoint, PRISMA_ACCESS_KEY_ID=KEY_ID, PRISMA_SECRET_KEY=SECRET)
                    out = subprocess.run(
                        [BIN, "backfill", "--bucket", bucket, "--tenant", "acme", "--api-url", api.url,
                         "--from", "2026-01-01", "--to", f"{last_day:%Y-%m-%d}"],
                        env=env, capture_output=True, text=True)
                    assert out.returncode == 0, out.stderr[-2000:]
                else:
                    python_backfill(api.url, endpoint, bucket, args.days)
                elapsed = time.monotonic() - started
                stored = count(s3, bucket)
                assert stored == len(records), f"{name}: {stored} objects, expected {len(records)}"
                rate = len(records) / elapsed
                results[name].append(rate)
                print(f"round {round_ + 1} {name:15} {elapsed:6.2f} s  {rate:7.1f} records/s  "
                      f"{api.requests - before} API requests", flush=True)
    finally:
        moto.close()
    best = {name: max(rates) for name, rates in results.items()}
    print(json.dumps({"records": len(records), "days": args.days, "api_rate": args.api_rate,
                      "records_per_sec": results, "ratio_best": round(best["audit-archiver"] / best["python"], 2)}))


if __name__ == "__main__":
    main()
