#!/usr/bin/env bash
# The package as users install it: build the wheel, install it in a fresh venv
# outside the checkout, and run the CLI from there (package data included).
set -euo pipefail
cd "$(dirname "$0")/.."
work=$(mktemp -d /tmp/orch-wheel.XXXXXX)
trap 'rm -rf "$work"' EXIT
.venv/bin/python -m pip wheel -q --disable-pip-version-check --no-deps -w "$work/dist" . 2>&1 | grep -v '^WARNING: Location' || true
python3 -m venv "$work/venv"
"$work/venv/bin/pip" install -q --disable-pip-version-check "$work"/dist/*.whl 2>&1 | grep -v '^WARNING: Location' || true
cd "$work"  # nothing of the checkout is reachable from here
"$work/venv/bin/orch" --help > help.txt
grep -q "recipe_dirs" help.txt
"$work/venv/bin/orch" --recipe python-http --dry-run > script.sbatch 2> dry-run.err
head -n 2 script.sbatch | grep -q '^#SBATCH --job-name=python-http_'
bash -n script.sbatch
"$work/venv/bin/orch" --recipe standin-llm --dry-run > /dev/null 2>&1  # a packaged workload file resolves
"$work/venv/bin/orch" --recipe ollama --dry-run 2>/dev/null | grep -q "DCGM_FI_DEV_GPU_UTIL"  # the packaged GPU exporter is inlined
"$work/venv/bin/orch" --recipe vllm --dry-run 2>/dev/null | grep -q "exec vllm serve"  # the vLLM recipe, native by its launch field
"$work/venv/bin/python" -c "from orchestrator.resources import RECIPES; assert (RECIPES / 'monitors' / 'vllm-monitor.yml').is_file()"  # seed 000's monitor recipes
echo "wheel: $(basename "$work"/dist/*.whl) installs; orch --help and orch --recipe python-http --dry-run work outside the checkout"
