#!/usr/bin/env bash
# What an idle `audit-archiver run` costs (BENCHMARKS.md, section 6): CPU and
# wake-ups over 60 s of long polling an empty queue on a fresh local moto.
# Options go to bench/idle.py, e.g.
#   bench/idle.sh                                   # the built binary, 60 s
#   bench/idle.sh --bin /tmp/old-audit-archiver --bin target/release/audit-archiver --repeat 2
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
cargo build --release -p audit-archiver --bin audit-archiver
exec .venv/bin/python bench/idle.py "$@"
