#!/usr/bin/env bash
# The host's own CPU per archived message against the bare SDK loop, on a fast
# in-memory S3 + SQS endpoint (bench/endpoint/) instead of moto (BENCHMARKS.md,
# section 3). Options go to bench/endpoint.py, e.g.
#   bench/endpoint.sh                                  # 20,000 messages, 10 queues, 3 rounds
#   bench/endpoint.sh --shape fifo --repeat 5
#   bench/endpoint.sh --quick                          # one tiny run of each (CI smoke)
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
# One build for all three: the same feature set as `cargo build --workspace
# --all-targets`, so nothing is compiled twice.
# The host with the system allocator too (`--no-default-features`: no
# mimalloc), kept beside the product's binary; built first, so the last build
# leaves the product's own binary in place.
cargo build --release -p audit-archiver --no-default-features --bin audit-archiver
cp target/release/audit-archiver target/release/audit-archiver-system-alloc
cargo build --release -p audit-archiver -p bench-endpoint \
    --bin audit-archiver --bin bench-endpoint --example bare_loop
exec .venv/bin/python bench/endpoint.py "$@"
