#!/usr/bin/env python3
"""Benchmark of `audit-archiver backfill` against a straightforward Python
script doing the same (requests + boto3), in the same session, interleaved.

Both read the same fake Prisma Cloud API (served here on 127.0.0.1 with the
documented shapes: POST /login -> a JWT in `token`, sent back as
x-redlock-auth; GET /auth_token/extend -> a fresh one; POST /audit/api/v1/log
with an absolute timeRange, limit and nextPageToken; at most --api-rate
requests in any second, 429 beyond, no Retry-After) and write to the same moto
server (a fresh bucket per run). The fake can also misbehave the way a shared
tenant does: --throttle-fraction answers that share of all requests 429
without Retry-After (seeded, the same sequence for every run), and
--token-ttl-secs makes tokens expire sooner than the documented 600 s (a
request with an expired token gets 401, as the real API answers).

Each run is timed from start to exit and checked afterwards: exactly N
objects in the bucket, each record's id once. The floor of a run is the
search requests the data needs (one per page: the same for every client) ÷
--api-rate; the ratio wall ÷ floor is what to read.

    .venv/bin/python bench/backfill.py [--records 3000] [--days 30] [--repeat 2]
    .venv/bin/python bench/backfill.py --records 2000 --days 136 \
        --throttle-fraction 0.08 --token-ttl-secs 3 \
        --bin /tmp/audit-archiver-before --bin target/release/audit-archiver

Needs target/release/audit-archiver (cargo build --release -p audit-archiver)
unless --bin names others.
"""
import argparse
import base64
import datetime
import hashlib
import hmac
import json
import os
import random
import re
import statistics
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import requests
from botocore.config import Config
from common import BIN, ENV, ROOT, Moto, aws_client

START_MS = 1_767_193_200_000  # 2026-01-01T00:00+09:00
DAY_MS = 86_400_000
JST = datetime.timezone(datetime.timedelta(hours=9))
KEY_ID, SECRET = "bench-key-id", "bench-secret"
PATH_STYLE = Config(s3={"addressing_style": "path"})
PAGE_SIZE = 500  # the API's most, and both clients' page size
API_ID = re.compile(r"api-([0-9a-f]{64})")


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


def record_id(record):
    """The id both clients give a record: SHA-256 of its canonical JSON."""
    canonical = json.dumps(json.loads(record), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class FakeApi:
    """The documented interface, rate-limited like the real one, with the
    throttling and token lifetime set by the caller."""

    def __init__(self, records, rate, throttle_fraction=0.0, token_ttl=600.0, seed=1):
        self.records, self.rate = records, rate
        self.throttle_fraction, self.token_ttl = throttle_fraction, token_ttl
        self.lock = threading.Lock()
        self.pages, self.key = {}, os.urandom(16)
        self.reset(seed)
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

            def do_GET(self):
                self.handle_request({})

            def do_POST(self):
                self.handle_request(self.body())

            def handle_request(self, request):
                search = self.path == "/audit/api/v1/log"
                with api.lock:
                    now = time.monotonic()
                    api.counts["searches"] += search
                    api.arrivals.append((now, self.path))
                    # Every request counts against the limit, refused ones too.
                    api.recent = [t for t in api.recent if now - t < 1.0] + [now]
                    if len(api.recent) > api.rate:
                        api.counts["429_rate"] += 1
                        return self.reply(429)
                    if api.rng.random() < api.throttle_fraction:
                        api.counts["429_random"] += 1
                        return self.reply(429)
                if self.command == "POST" and self.path == "/login":
                    if request.get("username") != KEY_ID or request.get("password") != SECRET:
                        return self.reply(401)
                    with api.lock:
                        api.counts["logins"] += 1
                    return self.reply(200, json.dumps({"token": api.token(), "message": "login_successful"}).encode())
                if not api.valid(self.headers.get("x-redlock-auth")):
                    with api.lock:
                        api.counts["401"] += 1
                    return self.reply(401)
                if self.command == "GET" and self.path == "/auth_token/extend":
                    with api.lock:
                        api.counts["extends"] += 1
                    return self.reply(200, json.dumps({"token": api.token(), "message": "login_successful"}).encode())
                if self.command != "POST" or not search:
                    return self.reply(404)
                token = request.get("nextPageToken")
                with api.lock:
                    if token:
                        start, end, offset = api.pages.pop(token)
                    else:
                        value = request["timeRange"]["value"]
                        start, end, offset = value["startTime"], value["endTime"], 0
                    api.counts["pages"] += 1
                matching = [r for t, r in api.records if start <= t <= end]
                page = matching[offset:offset + int(request.get("limit", 100))]
                body = '{"value":[' + ",".join(page) + "]"
                if offset + len(page) < len(matching):
                    with api.lock:
                        token = f"p{len(api.pages)}-{offset}-{start}-{os.urandom(4).hex()}"
                        api.pages[token] = (start, end, offset + len(page))
                    body += f',"nextPageToken":"{token}"'
                self.reply(200, (body + "}").encode())

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def reset(self, seed):
        """A new run: counters to zero, the throttling sequence of `seed`."""
        with self.lock:
            self.recent, self.arrivals = [], []
            self.rng = random.Random(seed)
            self.counts = dict.fromkeys(
                ("searches", "pages", "429_rate", "429_random", "401", "logins", "extends"), 0)

    def token(self):
        """A JWT as the real API issues (HS256; `iat` and `exp` in whole
        seconds): expired at `exp` whatever the client thinks."""
        now = time.time()
        header = b64url(b'{"alg":"HS256","typ":"JWT"}')
        payload = b64url(json.dumps({"sub": KEY_ID, "iat": int(now), "exp": int(now + self.token_ttl),
                                     "jti": os.urandom(6).hex()}).encode())
        signature = b64url(hmac.new(self.key, f"{header}.{payload}".encode(), "sha256").digest())
        return f"{header}.{payload}.{signature}"

    def valid(self, token):
        try:
            header, payload, signature = (token or "").split(".")
            expected = b64url(hmac.new(self.key, f"{header}.{payload}".encode(), "sha256").digest())
            claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        except ValueError:
            return False
        return hmac.compare_digest(signature, expected) and time.time() < claims["exp"]


def python_backfill(api_url, endpoint, bucket, days):
    """What one would write by hand: log in, page day by day, PUT each record;
    429 -> sleep and retry, 401 -> log in again."""
    s3 = aws_client("s3", endpoint, PATH_STYLE)
    http = requests.Session()
    session = {}

    def post(path, body, auth=False):
        while True:
            headers = {"x-redlock-auth": session["token"]} if auth else {}
            r = http.post(api_url + path, json=body, headers=headers)
            if r.status_code == 429:
                time.sleep(float(r.headers.get("Retry-After", "0.2")))
                continue
            if r.status_code == 401 and auth:
                login()
                continue
            r.raise_for_status()
            return r.json()

    def login():
        session["token"] = post("/login", {"username": KEY_ID, "password": SECRET})["token"]

    login()
    for day in range(days):
        start = START_MS + day * DAY_MS
        page_token = None
        while True:
            body = {"timeRange": {"type": "absolute", "value": {"startTime": start, "endTime": start + DAY_MS - 1}},
                    "limit": PAGE_SIZE}
            if page_token:
                body["nextPageToken"] = page_token
            page = post("/audit/api/v1/log", body, auth=True)
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


def check(s3, bucket, expected_ids):
    """Exactly one object per record, no other: (objects, problem or None)."""
    seen = {}
    total = 0
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        for o in page.get("Contents", []):
            if o["Key"].startswith("_state/"):
                continue
            total += 1
            found = API_ID.search(o["Key"])
            ident = found.group(1) if found else o["Key"]
            seen[ident] = seen.get(ident, 0) + 1
    missing = len(expected_ids - seen.keys())
    extra = len(seen.keys() - expected_ids)
    doubled = sum(1 for n in seen.values() if n > 1)
    if total != len(expected_ids) or missing or extra or doubled:
        return total, f"{total} objects for {len(expected_ids)} records: {missing} missing, {extra} unknown, {doubled} twice"
    return total, None


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=3000)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--api-rate", type=int, default=10)
    parser.add_argument("--throttle-fraction", type=float, default=0.0,
                        help="share of all requests answered 429 without Retry-After (seeded)")
    parser.add_argument("--token-ttl-secs", type=float, default=600.0,
                        help="token lifetime (the real API's is 600 s)")
    parser.add_argument("--seed", type=int, default=1,
                        help="seed of the first round's throttling sequence (round r: seed + r; "
                             "every run of a round gets the same)")
    parser.add_argument("--bin", action="append", metavar="PATH",
                        help="an audit-archiver binary to run; repeat to interleave several "
                             "(default: target/release/audit-archiver)")
    parser.add_argument("--no-python", action="store_true", help="skip the Python script")
    args = parser.parse_args()
    bins = args.bin or [BIN]
    for path in bins:
        if not os.path.exists(path):
            sys.exit(f"{path} missing: cargo build --release -p audit-archiver")
    records = make_records(args.records, args.days)
    expected_ids = {record_id(r) for _, r in records}
    assert len(expected_ids) == len(records)
    api = FakeApi(records, args.api_rate, args.throttle_fraction, args.token_ttl_secs, args.seed)
    moto = Moto(PATH_STYLE)
    endpoint, s3 = moto.endpoint, moto.s3
    last_day = (datetime.datetime.fromtimestamp(START_MS / 1000, JST) + datetime.timedelta(days=args.days - 1))
    names = [os.path.relpath(path, ROOT) if path.startswith(ROOT) else path for path in bins]
    sides = list(zip(names, bins)) + ([] if args.no_python else [("python", None)])
    results = {name: [] for name, _ in sides}
    failed = False
    try:
        for round_ in range(args.repeat):
            for index, (name, path) in enumerate(sides):
                bucket = f"bench-{index}-{round_}-{os.getpid()}"
                s3.create_bucket(Bucket=bucket)
                api.reset(args.seed + round_)
                started = time.monotonic()
                if path:
                    env = dict(ENV, AWS_ENDPOINT_URL=endpoint, PRISMA_ACCESS_KEY_ID=KEY_ID, PRISMA_SECRET_KEY=SECRET)
                    out = subprocess.run(
                        [path, "backfill", "--bucket", bucket, "--tenant", "acme", "--api-url", api.url,
                         "--from", "2026-01-01", "--to", f"{last_day:%Y-%m-%d}"],
                        env=env, capture_output=True, text=True)
                    assert out.returncode == 0, out.stderr[-2000:]
                else:
                    python_backfill(api.url, endpoint, bucket, args.days)
                wall = time.monotonic() - started
                with api.lock:
                    counts = dict(api.counts)
                stored, problem = check(s3, bucket, expected_ids)
                if problem:
                    print(f"FAILED {name}: {problem}", flush=True)
                    failed = True
                floor = counts["pages"] / args.api_rate
                row = dict(counts, wall=round(wall, 2), floor=floor, ratio=round(wall / floor, 2),
                           objects=stored, exactly_once=problem is None)
                results[name].append(row)
                print(f"round {round_ + 1} {name:32} {wall:6.2f} s  {len(records) / wall:6.1f} records/s  "
                      f"{counts['searches']} search requests ({counts['pages']} pages), "
                      f"429s {counts['429_random']} random + {counts['429_rate']} over the rate, "
                      f"401s {counts['401']}, logins {counts['logins']}, extends {counts['extends']}, "
                      f"floor {floor:.1f} s, wall/floor {wall / floor:.2f}", flush=True)
    finally:
        moto.close()
    print("\n| run | wall (median) | search requests | 429s | logins + extends | floor | wall ÷ floor |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name, rows in results.items():
        wall = statistics.median(r["wall"] for r in rows)
        median = lambda key: statistics.median(r[key] for r in rows)  # noqa: E731
        print(f"| {name} | {wall:.1f} s | {median('searches'):g} | "
              f"{median('429_random') + median('429_rate'):g} | {median('logins') + median('extends'):g} | "
              f"{rows[0]['floor']:.1f} s | **{wall / rows[0]['floor']:.2f}** |")
    print(json.dumps({"records": len(records), "days": args.days, "api_rate": args.api_rate,
                      "throttle_fraction": args.throttle_fraction, "token_ttl_secs": args.token_ttl_secs,
                      "runs": results}))
    if failed:
        sys.exit(1)


if __name__ == "__main__":
    main()
