#!/usr/bin/env bash
# Benchmarks of the read commands (BENCHMARKS.md, item 6): `audit-archiver
# verify` and `query` against a sequential boto3 script doing the same work,
# and query's peak RSS over one day against over the whole range, on a fresh
# local moto. Options go to bench/readback.py, e.g.
#   bench/readback.sh                       # 10,000 objects over 10 days (~5 min)
#   bench/readback.sh --objects 2000 --days 4
#   bench/readback.sh --quick               # 200 objects (CI smoke)
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
# The same build as bench/e2e.sh (same features), so one reuses the other's.
cargo build --release -p audit-archiver --bin audit-archiver --example bare_loop
exec .venv/bin/python bench/readback.py "$@"
