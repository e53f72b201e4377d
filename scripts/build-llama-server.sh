#!/usr/bin/env bash
# llama.cpp's llama-server and a TEST MODEL for the sandbox, with no download beyond the package
# registries: PyPI's llama-cpp-python source archive vendors the whole llama.cpp tree. Built once per
# machine into $ORCH_LLAMA_CACHE (default /var/cache/orch-llama, where the sandbox's nodes see it) and
# linked as /usr/local/bin/llama-server; a machine that built it reuses it. Built with llama.cpp's RPC
# backend (GGML_RPC=ON): llama-server --rpc, and ggml-rpc-server (llama.cpp's RPC worker) for the workers of the llamacpp-rpc recipe.
set -euo pipefail
cd "$(dirname "$0")/.."
VERSION=0.3.36                      # llama-cpp-python release whose vendored llama.cpp is built
BUILD="$VERSION rpc"                # what the cache holds: a cache without ggml-rpc-server is rebuilt
CACHE=${ORCH_LLAMA_CACHE:-/var/cache/orch-llama}
if [ -x "$CACHE/bin/llama-server" ] && [ -x "$CACHE/bin/ggml-rpc-server" ] \
   && [ "$(cat "$CACHE/VERSION" 2>/dev/null)" = "$BUILD" ] && [ -s "$CACHE/test-model.gguf" ]; then
  ln -sf "$CACHE/bin/llama-server" /usr/local/bin/llama-server
  ln -sf "$CACHE/bin/ggml-rpc-server" /usr/local/bin/ggml-rpc-server
  echo "[llama] cached: $CACHE/bin/llama-server and ggml-rpc-server ($BUILD), $CACHE/test-model.gguf"
  exit 0
fi
need=()
command -v cmake >/dev/null 2>&1 || need+=(cmake)
command -v ninja >/dev/null 2>&1 || need+=(ninja-build)
command -v g++ >/dev/null 2>&1 || need+=(g++)
if [ ${#need[@]} -gt 0 ]; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
work=$(mktemp -d /tmp/orch-llama-build.XXXXXX)
trap 'rm -rf "$work"' EXIT
echo "[llama] fetching llama-cpp-python $VERSION (source, 77 MB) from PyPI"
# --no-binary for this one package only: pip reads an sdist's metadata by installing its build
# backend first, and ":all:" had it build scikit-build-core, cmake and ninja from source for that
# (4 minutes of a 10-minute fresh demo, for a tarball that takes 6 seconds to fetch)
.venv/bin/python -m pip download -q --disable-pip-version-check --no-deps --no-binary llama-cpp-python \
  "llama-cpp-python==$VERSION" -d "$work" 2>&1 | grep -v '^WARNING: Location' || true
tar -xzf "$work"/llama_cpp_python-*.tar.gz -C "$work"
src=$(echo "$work"/llama_cpp_python-*/vendor/llama.cpp)
echo "[llama] building llama-server and ggml-rpc-server (CPU, RPC backend, static; several minutes on 2 cores)"
start=$(date +%s)
cmake -S "$src" -B "$work/build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DLLAMA_CURL=OFF -DLLAMA_OPENSSL=OFF \
  -DBUILD_SHARED_LIBS=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DGGML_RPC=ON > "$work/cmake.log" 2>&1 \
  || { tail -n 30 "$work/cmake.log"; exit 1; }
# ninja's count of compiled units every 30 s, so a person waiting sees the build move (211 in all);
# a pipeline in the foreground, so Ctrl-C stops the compilers with it
progress() {
  local line last=$SECONDS n=""
  while IFS= read -r line; do
    printf '%s\n' "$line" >> "$work/build.log"
    [[ $line =~ ^\[([0-9]+/[0-9]+)\] ]] && n=${BASH_REMATCH[1]}
    if [ $(( SECONDS - last )) -ge 30 ] && [ -n "$n" ]; then
      last=$SECONDS
      echo "[llama] compiled $n after $(( $(date +%s) - start )) s"
    fi
  done
}
cmake --build "$work/build" --target llama-server ggml-rpc-server -j "$(nproc)" 2>&1 | progress \
  || { tail -n 30 "$work/build.log"; exit 1; }
mkdir -p "$CACHE/bin"
install -m 755 "$work/build/bin/llama-server" "$CACHE/bin/llama-server"
install -m 755 "$work/build/bin/ggml-rpc-server" "$CACHE/bin/ggml-rpc-server"
cp "$src/models/ggml-vocab-llama-spm.gguf" "$CACHE/"
.venv/bin/python -m sandbox.testmodel "$CACHE/ggml-vocab-llama-spm.gguf" "$CACHE/test-model.gguf"
echo "$BUILD" > "$CACHE/VERSION"
ln -sf "$CACHE/bin/llama-server" /usr/local/bin/llama-server
ln -sf "$CACHE/bin/ggml-rpc-server" /usr/local/bin/ggml-rpc-server
echo "[llama] built in $(( $(date +%s) - start )) s: $CACHE/bin/llama-server ($("$CACHE/bin/llama-server" --version 2>&1 | head -n1))"
