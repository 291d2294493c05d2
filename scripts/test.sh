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
scripts/setup.sh --component-hosts

step "format"
cargo fmt --all -- --check
cargo fmt --all --manifest-path adapters/Cargo.toml -- --check

# The end-to-end suites (`test = false` in host/Cargo.toml, so that a plain
# `cargo test` stays the quick everyday loop) are built and linted by name.
e2e=(--test e2e --test readback --test lambda --test backfill)
suites=("${e2e[@]}" --test reliability)

step "build (release: the component, then the host that embeds it)"
cargo build --release --workspace --all-targets
cargo build --release -p audit-archiver "${suites[@]}"

step "lint"
cargo clippy --release --workspace --all-targets --quiet -- -D warnings
cargo clippy --release -p audit-archiver "${suites[@]}" --quiet -- -D warnings
for adapter in audit-archiver-http audit-archiver-route; do
  cargo clippy --release --locked --quiet --target wasm32-wasip2 --manifest-path adapters/Cargo.toml \
    --target-dir target/adapters -p "$adapter" -- -D warnings
done

step "tests: unit, property, shared vectors, fuzz equivalence, the component's sandbox"
cargo test --release --workspace --no-fail-fast

step "end-to-end: run, route, FIFO, metrics, verify/query, Lambda, backfill (real binary, moto on loopback)"
cargo test --release -p audit-archiver "${e2e[@]}" --no-fail-fast

step "reliability scenarios: kills, outages, faults, hostile components, refused calls (see RELIABILITY.md)"
cargo test --release -p audit-archiver --test reliability -- --nocapture

step "benchmarks build and run one tiny iteration (not timed: numbers are in BENCHMARKS.md)"
cargo bench -p audit-archiver --bench component --quiet -- --test
bench/e2e.sh --quick
bench/endpoint.sh --quick
.venv/bin/python bench/queues.py --quick
bench/readback.sh --quick
bench/digests.sh --quick
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
