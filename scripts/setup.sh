#!/usr/bin/env bash
# Installs everything the quick start and the tests need, locally and
# idempotently: the wasm32-wasip2 Rust target, and a git-ignored Python venv
# (.venv) with moto's S3/SQS server and the other Python tools. With
# `--component-hosts` (the test suite's setup), also wasmtime-cli and wac-cli
# for the WASI adapters' tests: a build of minutes once per machine, which the
# quick start does not need.
set -euo pipefail
cd "$(dirname "$0")/.."
component_hosts=false
case "${1:-}" in
  "") ;;
  --component-hosts) component_hosts=true ;;
  *) echo "usage: scripts/setup.sh [--component-hosts]" >&2; exit 2 ;;
esac

# Targets are not installed automatically here (RUSTUP_AUTO_INSTALL=0).
if ! rustup target list --installed | grep -qx wasm32-wasip2; then
  echo "setup: adding the wasm32-wasip2 Rust target"
  rustup target add wasm32-wasip2
fi

# Debian packages: objdump checks the Lambda bootstrap's glibc needs and zip
# packs it (binutils, zip); promtool checks and unit-tests
# deploy/prometheus-alerts.yaml (prometheus; its service is not wanted here).
missing=()
command -v objdump >/dev/null || missing+=(binutils)
command -v zip >/dev/null || missing+=(zip)
# openssl makes the digests' keys in the quick start and the tests.
command -v openssl >/dev/null || missing+=(openssl)
command -v promtool >/dev/null || missing+=(prometheus)
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing Debian packages: ${missing[*]}"
  sudo_cmd=""
  [ "$(id -u)" -eq 0 ] || sudo_cmd=sudo
  export DEBIAN_FRONTEND=noninteractive
  $sudo_cmd apt-get update -qq
  $sudo_cmd apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  if command -v systemctl >/dev/null; then $sudo_cmd systemctl stop prometheus 2>/dev/null || true; fi
  $sudo_cmd pkill -x prometheus 2>/dev/null || true
fi

requirements=tests/requirements.txt
stamp=".venv/.installed-$(sha256sum "$requirements" | cut -c1-16)"
if [ ! -f "$stamp" ]; then
  echo "setup: installing Python tools into .venv ($requirements)"
  [ -x .venv/bin/python ] || python3 -m venv .venv
  .venv/bin/python -m pip install --quiet --disable-pip-version-check --upgrade pip
  .venv/bin/python -m pip install --quiet --disable-pip-version-check -r "$requirements"
  rm -f .venv/.installed-*
  touch "$stamp"
fi

# Component hosts and the composer for the adapters (scripts/build-adapters.sh,
# tests/js/adapters.test.mjs): `wac` plugs the router into them, `wasmtime
# serve`/`run` is the reference host for wasi:http and wasi:cli. Built from
# crates.io, pinned, with only the features used: wasmtime-cli has the host's
# wasmtime major version (48) and `run` + `serve` for components; wac-cli has no
# registry client. They are built once per machine into a cache outside the
# clone (CI runs in a fresh clone), then linked from the git-ignored .tools/bin.
# Measured on this 2-core machine while five other builds ran (load average
# 10-17): wasmtime-cli ~25 min wall (its last 5 crates alone: 264 s CPU),
# wac-cli 13 min wall for 218 s CPU (~2 min on idle cores). Nothing when
# already there: the check is one file test.
tools_cache="${AUDIT_ARCHIVER_TOOLS_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/audit-archiver/tools}"
install_tool() { # NAME VERSION BIN CARGO-INSTALL-FLAGS...
  local name=$1 version=$2 bin=$3
  shift 3
  # Another feature set is another build.
  local root="$tools_cache/$name-$version-$(printf '%s ' "$@" | sha256sum | cut -c1-8)"
  if [ ! -x "$root/bin/$bin" ]; then
    echo "setup: building $name $version from crates.io into $root (once per machine; minutes)"
    CARGO_TARGET_DIR="$tools_cache/cargo-target" cargo install --quiet --locked \
      "$name" --version "=$version" --no-default-features "$@" --root "$root"
    rm -rf "$tools_cache/cargo-target"
  fi
  mkdir -p .tools/bin
  ln -sfn "$root/bin/$bin" ".tools/bin/$bin"
}
if [ "$component_hosts" = false ]; then exit 0; fi
install_tool wasmtime-cli 48.0.8 wasmtime --features run,serve,component-model,component-model-async,cranelift,pooling-allocator
install_tool wac-cli 0.12.0 wac
