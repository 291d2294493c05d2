#!/usr/bin/env bash
# Benchmarks of the signed digests (BENCHMARKS.md, section 12): what sealing
# costs per 1,000 objects (requests, CPU) and its share of archiving's CPU,
# and `verify --digests` against a sequential boto3 + cryptography validator,
# on a fresh local moto. Options go to bench/digests.py, e.g.
#   bench/digests.sh                        # 1,000 messages + 5,000 objects, 20 ms per request (~3 min)
#   bench/digests.sh --quick                # a tiny run (CI smoke)
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
cargo build --release -p audit-archiver --bin audit-archiver
exec .venv/bin/python bench/digests.py "$@"
