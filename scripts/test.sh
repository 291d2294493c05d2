#!/usr/bin/env bash
# The whole test suite, from a fresh clone: installs what it needs (see
# scripts/setup.sh), checks formatting and lints, builds the routing component
# and the host, and runs every test — unit, property, fuzz, shared vectors,
# end-to-end and reliability scenarios against a local moto S3/SQS server, the
# component in Node.js and Python, the Lambda package, a smoke run of the
# benchmarks, template lint, the Prometheus alerting rules' unit tests.
set -euo pipefail
cd "$(dirname "$0")/.."
started=$SECONDS
step() { printf '\n== %s (%ss)\n' "$*" "$((SECONDS - started))"; }

step "setup"
scripts/setup.sh

step "format"
cargo fmt --all -- --check
cargo fmt --all --manifest-path adapters/Cargo.toml -- --check

step "build (release: the component, then the host that embeds it)"
cargo build --release --workspace --all-targets

step "lint"
cargo clippy --release --workspace --all-targets --quiet -- -D warnings
for adapter in audit-archiver-http audit-archiver-route; do
  cargo clippy --release --locked --quiet --target wasm32-wasip2 --manifest-path adapters/Cargo.toml \
    --target-dir target/adapters -p "$adapter" -- -D warnings
done

step "tests: unit, property, vectors, fuzz, end-to-end and reliability (moto on loopback)"
cargo test --release --workspace --no-fail-fast

step "benchmarks build and run one tiny iteration (not timed: numbers are in BENCHMARKS.md)"
cargo bench -p audit-archiver --bench component --quiet -- --test
bench/e2e.sh --quick
bench/readback.sh --quick
scripts/package-lambda.sh --no-build
.venv/bin/python bench/lambda.py --quick

step "the same component in Node.js (jco) and Python (wasmtime-py), and composed into wasi:http and wasi:cli (jco, wasmtime), compared with the host"
scripts/test-runtimes.sh

step "CloudFormation template lint (cfn-lint)"
.venv/bin/cfn-lint deploy/cloudformation.yaml

step "Prometheus alerting rules: check and unit tests (promtool)"
promtool check rules deploy/prometheus-alerts.yaml
(cd deploy && promtool test rules prometheus-alerts.test.yaml)

step "done"
