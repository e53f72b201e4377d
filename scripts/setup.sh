#!/usr/bin/env bash
# Installs what the tool and its tests need on a Debian/Ubuntu machine (root):
# a virtualenv with the package, the Debian packages of the sandbox cluster,
# headless Chromium (the report's rendering test), and llama.cpp's llama-server with a
# test model, and vLLM with its test model (real engines for the sandbox; built once per machine).
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
# compat: a plain path entry in a .pth file; the default editable mode imports a finder hook at
# every Python start-up (about 10 ms of each command's wall time)
.venv/bin/pip install -q --disable-pip-version-check -e '.[test,sandbox]' --config-settings editable_mode=compat
.venv/bin/python -c 'from sandbox import cluster as s; s.install_packages(lambda m: print("[setup]", m))'
# llama.cpp's server and a test model for the sandbox (built once per machine, then reused)
scripts/build-llama-server.sh
# vLLM (CPU build) with its test model, and aiperf, for the sandbox's nodes (built once per machine)
scripts/build-vllm.sh
# the cluster's client venv (numpy, chromadb) for the vector client and Chroma (built once per machine)
scripts/build-venv.sh
