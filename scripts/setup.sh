#!/usr/bin/env bash
# Installs what the tool and its tests need on a Debian/Ubuntu machine (root):
# a virtualenv with the package, the Debian packages of the sandbox cluster,
# and headless Chromium (the report's rendering test).
set -euo pipefail
cd "$(dirname "$0")/.."
need=()
python3 -c 'import venv, ensurepip' 2>/dev/null || need+=(python3-venv)
command -v chromium >/dev/null 2>&1 || need+=(chromium fonts-dejavu-core)
if [ ${#need[@]} -gt 0 ]; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/pip install -q --disable-pip-version-check -e '.[test]'
.venv/bin/python -c 'from sandbox import cluster as s; s.install_packages(lambda m: print("[setup]", m))'
