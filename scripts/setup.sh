#!/usr/bin/env bash
# Installs what the tool and its tests need on a Debian/Ubuntu machine (root):
# a virtualenv with the package, the Debian packages of the sandbox cluster,
# headless Chromium (the report's rendering test), and llama.cpp's llama-server with a
# test model, and vLLM with its test model (real engines for the sandbox; built once per machine).
#   scripts/setup.sh               everything the test suite needs
#   scripts/setup.sh --engine E    what the demo of engine E (llamacpp or vllm) runs, and nothing else
set -euo pipefail
cd "$(dirname "$0")/.."
only=all
case "${1:-}" in
  "") ;;
  --engine) only=${2:-}; [ "$only" = llamacpp ] || [ "$only" = vllm ] \
              || { echo "usage: $0 [--engine llamacpp|vllm]" >&2; exit 2; } ;;
  *) echo "usage: $0 [--engine llamacpp|vllm]" >&2; exit 2 ;;
esac
step() { echo "[setup] $*"; }
need=()
python3 -c 'import venv, ensurepip' 2>/dev/null || need+=(python3-venv)
# headless Chromium renders the report's PDF and PNG exports (the suite's test of them); the demo's
# Markdown summary needs none
[ "$only" = all ] && { command -v chromium >/dev/null 2>&1 || need+=(chromium fonts-dejavu-core); }
if [ ${#need[@]} -gt 0 ]; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
[ -x .venv/bin/python ] || python3 -m venv .venv
# compat: a plain path entry in a .pth file; the default editable mode imports a finder hook at
# every Python start-up (about 10 ms of each command's wall time)
step "the tool in .venv (pip, under a minute)"
.venv/bin/pip install -q --disable-pip-version-check -e '.[test,sandbox]' --config-settings editable_mode=compat
step "the sandbox cluster's Debian packages (slurm, munge, sshd, prometheus; 1-2 minutes the first time)"
.venv/bin/python -c 'from sandbox import cluster as s; s.install_packages(lambda m: print("[setup]", m))'
if [ "$only" = all ] || [ "$only" = llamacpp ]; then
  # llama.cpp's server and a test model for the sandbox (built once per machine, then reused)
  step "llama.cpp's server (built once per machine: 4-6 minutes on 2 cores, a line every 30 s; then reused)"
  scripts/build-llama-server.sh
fi
if [ "$only" = all ] || [ "$only" = vllm ]; then
  # vLLM (CPU build) with its test model, and aiperf, for the sandbox's nodes (built once per machine)
  step "vLLM's CPU build, its test model and aiperf (once per machine: about 3-4 minutes, 4.6 GB)"
  scripts/build-vllm.sh
fi
if [ "$only" = all ]; then
  # the cluster's client venv (numpy, chromadb) for the vector client and Chroma (built once per machine)
  step "the cluster's client venv (numpy, chromadb; once per machine, about a minute)"
  scripts/build-venv.sh
else
  step "not built for the $only demo: $( [ "$only" = llamacpp ] && echo "vLLM and aiperf (scripts/demo.sh --engine vllm builds them), " )the client venv and Chromium (scripts/test.sh builds everything)"
fi
