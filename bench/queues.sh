#!/usr/bin/env bash
# Hundreds of tenant queues in one `audit-archiver run` (BENCHMARKS.md,
# section 11): RSS, idle CPU and wake-ups, requests per idle queue, and send →
# stored with a few busy queues among idle ones, on the in-memory endpoint.
# Options go to bench/queues.py, e.g.
#   bench/queues.sh                                   # 10 queues, then 300
#   bench/queues.sh --queues 10 --queues 300 --repeat 2
#   bench/queues.sh --quick                           # one short run (CI smoke)
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
cargo build --release -p audit-archiver -p bench-endpoint --bin audit-archiver --bin bench-endpoint
exec .venv/bin/python bench/queues.py "$@"
