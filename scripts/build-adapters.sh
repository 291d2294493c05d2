#!/usr/bin/env bash
# Builds the adapters (adapters/, wasm32-wasip2) and plugs the routing
# component into each with `wac plug`, giving two standard components:
#
#   target/adapters/audit-archiver-http.wasm   wasi:http/proxy   (POST /route)
#   target/adapters/audit-archiver-route.wasm  wasi:cli/command  (a Unix filter)
#
# The router is the release build the host embeds
# (target/component/wasm32-wasip2/release/audit_archiver_transform.wasm, built
# here if missing), or env ROUTER_WASM. wac is the one scripts/setup.sh
# links as .tools/bin/wac, or env WAC. Nothing built here is committed.
set -euo pipefail
cd "$(dirname "$0")/.."

out=target/adapters
router=${ROUTER_WASM:-target/component/wasm32-wasip2/release/audit_archiver_transform.wasm}
wac=${WAC:-.tools/bin/wac}
if [ ! -x "$wac" ]; then
  echo "build-adapters: $wac is missing: run scripts/setup.sh --component-hosts (it installs wac-cli)" >&2
  exit 1
fi
if [ -z "${ROUTER_WASM:-}" ]; then
  # The same build host/build.rs runs (a no-op when it is up to date).
  cargo build --quiet --release --target wasm32-wasip2 -p audit-archiver-transform \
    --target-dir target/component
fi
[ -f "$router" ] || { echo "build-adapters: no routing component at $router" >&2; exit 1; }

# One package at a time: the HTTP adapter is no_std, and building it alongside
# the CLI one would unify std features into it.
for package in audit-archiver-http audit-archiver-route; do
  cargo build --quiet --release --locked --target wasm32-wasip2 \
    --manifest-path adapters/Cargo.toml --target-dir "$out" -p "$package"
done

built="$out/wasm32-wasip2/release"
"$wac" plug --plug "$router" "$built/audit_archiver_http.wasm" -o "$out/audit-archiver-http.wasm"
"$wac" plug --plug "$router" "$built/audit-archiver-route.wasm" -o "$out/audit-archiver-route.wasm"

for composed in "$out/audit-archiver-http.wasm" "$out/audit-archiver-route.wasm"; do
  echo "build-adapters: $composed ($(stat -c %s "$composed") bytes)"
done
