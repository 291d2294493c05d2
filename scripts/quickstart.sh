#!/usr/bin/env bash
# Quick start, no AWS account needed: starts a local S3/SQS endpoint (moto) on
# a free loopback port, creates two tenant queues (one FIFO) and a bucket,
# sends sample audit logs (two in the same second among them), runs
# `audit-archiver run --drain`, prints the archive tree and the summary, and
# stops the endpoint.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
echo "quickstart: building audit-archiver (release; the first build takes several minutes)"
cargo build --release --quiet -p audit-archiver

port=$(.venv/bin/python -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
endpoint="http://127.0.0.1:$port"
.venv/bin/moto_server -H 127.0.0.1 -p "$port" >/dev/null 2>&1 &
moto_pid=$!
trap 'kill $moto_pid 2>/dev/null || true' EXIT
.venv/bin/python - "$endpoint" <<'PY'
import sys, time, urllib.request
for _ in range(300):
    try:
        urllib.request.urlopen(sys.argv[1], timeout=1)
        break
    except Exception:
        time.sleep(0.1)
else:
    sys.exit("quickstart: moto did not start")
PY

export AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing AWS_REGION=us-east-1
bucket=prismacloud-auditlog-archive
mapfile -t queues < <(.venv/bin/python scripts/quickstart.py seed "$endpoint" "$bucket")
echo "quickstart: local endpoint $endpoint, bucket $bucket, queues:"
printf '  %s\n' "${queues[@]}"

echo "quickstart: audit-archiver run --drain --key-template seed --time-source event"
target/release/audit-archiver run --drain \
  --endpoint-url "$endpoint" --bucket "$bucket" \
  --queue "${queues[0]}" --queue "${queues[1]}" \
  --key-template seed --time-source event --stats-interval-secs 0

echo
.venv/bin/python scripts/quickstart.py show "$endpoint" "$bucket"
