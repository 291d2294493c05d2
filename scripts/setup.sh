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

# The Lambda package: objdump checks bootstrap's glibc needs, zip packs it.
if ! command -v objdump >/dev/null || ! command -v zip >/dev/null; then
  echo "setup: installing binutils and zip (Debian packages)"
  sudo_cmd=""
  [ "$(id -u)" -eq 0 ] || sudo_cmd=sudo
  $sudo_cmd apt-get update -qq && $sudo_cmd apt-get install -y -qq binutils zip
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

# promtool checks and unit-tests deploy/prometheus-alerts.yaml (Debian's
# prometheus package ships it). The package's service is not wanted here.
if ! command -v promtool >/dev/null; then
  echo "setup: installing promtool (Debian package prometheus)"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends prometheus >/dev/null
  if command -v systemctl >/dev/null; then systemctl stop prometheus 2>/dev/null || true; fi
  pkill -x prometheus 2>/dev/null || true
fi
