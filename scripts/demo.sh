#!/usr/bin/env bash
# One command, fresh machine to result: install, bring the sandbox cluster up,
# and run the tool's main job against it through the login node's SSH.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
.venv/bin/python main.py sandbox up >/dev/null
export ORCH_CONFIG=/var/lib/orch-sandbox/config.yaml
echo "== doctor: is the cluster usable? =="
.venv/bin/python main.py --stats doctor
echo
echo "The sandbox stays up; \`export ORCH_CONFIG=$ORCH_CONFIG\` to use it, \`.venv/bin/python main.py sandbox down\` to remove it."
