#!/usr/bin/env bash
# The routing component in the other runtimes: Node.js (jco) and Python
# (wasmtime-py) run the shared vectors and the guide's snippets, and compare
# every result with `audit-archiver route`, byte for byte. The same component
# composed into wasi:http and wasi:cli (scripts/build-adapters.sh) runs under
# `jco serve`/`jco run` and `wasmtime serve`/`wasmtime run` and is compared the
# same way (tests/js/adapters.test.mjs).
#
# Assumes `scripts/setup.sh --component-hosts` (the .venv with wasmtime and pytest; wac and the
# wasmtime CLI in .tools/bin) and
# `cargo build --release --workspace` have run. Installs jco into the
# git-ignored tests/js/node_modules from the committed package-lock.json, only
# when the lock file changed. Env ROUTER_WASM / AUDIT_ARCHIVER_BIN test another
# component / host binary.
set -euo pipefail
cd "$(dirname "$0")/.."

for built in target/component/wasm32-wasip2/release/audit_archiver_transform.wasm target/release/audit-archiver; do
  if [ -z "${ROUTER_WASM:-}${AUDIT_ARCHIVER_BIN:-}" ] && [ ! -f "$built" ]; then
    echo "test-runtimes: $built is missing: run cargo build --release --workspace first" >&2
    exit 1
  fi
done
command -v node >/dev/null || { echo "test-runtimes: Node.js 20 or later is required" >&2; exit 1; }
node_major=$(node -p 'process.versions.node.split(".")[0]')
if [ "$node_major" -lt 20 ]; then
  echo "test-runtimes: Node.js 20 or later is required (found $(node --version))" >&2
  exit 1
fi

stamp="tests/js/node_modules/.installed-$(sha256sum tests/js/package-lock.json | cut -c1-16)"
if [ ! -f "$stamp" ]; then
  echo "test-runtimes: npm ci (tests/js: jco)"
  (cd tests/js && npm ci --no-audit --no-fund --loglevel=error)
  touch "$stamp"
fi

echo "test-runtimes: the adapters composed with the component (wac plug)"
scripts/build-adapters.sh

echo "test-runtimes: Node.js (jco; the adapters under jco and wasmtime)"
(cd tests/js && node --test)

echo "test-runtimes: Python (wasmtime-py)"
.venv/bin/python -m pytest -q -p no:cacheprovider tests/python
