#!/usr/bin/env bash
# Installs everything the quick start and the tests need, locally and
# idempotently: the wasm32-wasip2 Rust target, and a git-ignored Python venv
# (.venv) with moto's S3/SQS server and the other Python tools.
set -euo pipefail
cd "$(dirname "$0")/.."

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
