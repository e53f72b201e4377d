#!/usr/bin/env bash
# Installs what the tool and its tests need on a Debian/Ubuntu machine (root):
# a virtualenv with the package, and the Debian packages of the sandbox cluster.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! python3 -c 'import venv, ensurepip' 2>/dev/null; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv
fi
[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/pip install -q --disable-pip-version-check -e '.[test]'
.venv/bin/python -c 'from orchestrator import sandbox as s, cli; s.install_packages(lambda m: print("[setup]", m))'
