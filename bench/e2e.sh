#!/usr/bin/env bash
# End-to-end benchmarks (BENCHMARKS.md, items 3-5): `audit-archiver run --drain`
# against a bare aws-sdk-rust loop and a boto3 poller of the reference design,
# each against a fresh local moto server. Options go to bench/e2e.py, e.g.
#   bench/e2e.sh                          # everything (~5 min on 2 cores)
#   bench/e2e.sh --experiment compare --messages 300 --repeat 5
#   bench/e2e.sh --quick                  # one tiny run of each (CI smoke)
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
cargo build --release -p audit-archiver --bin audit-archiver --example bare_loop
exec .venv/bin/python bench/e2e.py "$@"
