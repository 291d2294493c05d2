#!/usr/bin/env bash
# Quick start, no AWS account needed: starts a local S3/SQS endpoint (moto) on
# a free loopback port, creates two tenant queues (one FIFO) and a bucket,
# sends sample audit logs (two in the same second among them), runs
# `audit-archiver run --drain` sealing signed digests with a local key, prints
# the archive tree and the summary, proves the archive with `verify`, then
# rewrites one object as an intruder would and shows `verify` catching it, and
# stops the endpoint.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh --toolchain
# moto (and openssl if missing) install while the binary builds: the build is
# the long part, and it needs only the Rust target.
setup_log=$(mktemp)
scripts/setup.sh >"$setup_log" 2>&1 &
setup_pid=$!
echo "quickstart: building audit-archiver (release; the first build takes several minutes)"
cargo build --release --quiet -p audit-archiver
if ! wait "$setup_pid"; then
  cat "$setup_log" >&2
  echo "quickstart: scripts/setup.sh failed (above)" >&2
  exit 1
fi
cat "$setup_log"
rm -f "$setup_log"

port=$(.venv/bin/python -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
endpoint="http://127.0.0.1:$port"
.venv/bin/moto_server -H 127.0.0.1 -p "$port" >/dev/null 2>&1 &
moto_pid=$!
keys=$(mktemp -d)
trap 'kill $moto_pid 2>/dev/null || true; rm -rf "$keys"' EXIT
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

# The digests' signing key (KMS in production) and the public key an auditor
# holds. Periods of 3 s here so the demo needs not wait an hour.
openssl genpkey -algorithm ed25519 -out "$keys/digest-key.pem" 2>/dev/null
openssl pkey -in "$keys/digest-key.pem" -pubout -out "$keys/digest-key.pub.pem"
sealing=(--digest-key-file "$keys/digest-key.pem" --digest-period-mins 0.05 --digest-delay-mins 0)

echo "quickstart: audit-archiver run --drain --key-template seed --time-source event --digest-key-file digest-key.pem"
target/release/audit-archiver run --drain \
  --endpoint-url "$endpoint" --bucket "$bucket" \
  --queue "${queues[0]}" --queue "${queues[1]}" \
  --key-template seed --time-source event --stats-interval-secs 0 "${sealing[@]}"

sleep 3
echo "quickstart: audit-archiver seal (the periods closed since)"
target/release/audit-archiver seal --endpoint-url "$endpoint" --bucket "$bucket" "${sealing[@]}"

echo
.venv/bin/python scripts/quickstart.py show "$endpoint" "$bucket"

echo
echo "quickstart: audit-archiver verify --public-key digest-key.pub.pem"
target/release/audit-archiver verify --endpoint-url "$endpoint" --bucket "$bucket" \
  --key-template seed --public-key "$keys/digest-key.pub.pem" | tail -n 7

tampered=$(.venv/bin/python scripts/quickstart.py tamper "$endpoint" "$bucket")
echo
echo "quickstart: an intruder rewrote $tampered (body and metadata); verify again"
if target/release/audit-archiver verify --endpoint-url "$endpoint" --bucket "$bucket" \
  --key-template seed --public-key "$keys/digest-key.pub.pem" >/dev/null 2>"$keys/problems"; then
  echo "quickstart: verify did not catch the tampered object" >&2
  exit 1
fi
grep ' INVALID: ' "$keys/problems"
echo "quickstart: verify exits 1: the change is proven"
