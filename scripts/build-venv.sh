#!/usr/bin/env bash
# The cluster's client venv for the sandbox: numpy (the vector client's exact neighbours) and
# chromadb (the Chroma server), built once per machine with Debian's python3 into $ORCH_VENV_CACHE
# (default /var/cache/orch-venv, where the sandbox's nodes see it; `sandbox up` links it as the
# cluster user's ~/.orchestrator/venv, the default remote.venv). On a real cluster, build the same
# venv on the login node (see README, "Data services"); `doctor` checks it either way.
set -euo pipefail
CACHE=${ORCH_VENV_CACHE:-/var/cache/orch-venv}
WANT="chromadb==1.5.9 numpy"
if [ -x "$CACHE/bin/python" ] && [ "$(cat "$CACHE/WANT" 2>/dev/null)" = "$WANT" ]; then
  echo "[venv] cached: $CACHE ($WANT)"
  exit 0
fi
echo "[venv] building $CACHE ($WANT) with /usr/bin/python3"
rm -rf "$CACHE"
/usr/bin/python3 -m venv "$CACHE"
# shellcheck disable=SC2086
"$CACHE/bin/pip" install -q --disable-pip-version-check $WANT 2>&1 | grep -v '^WARNING: Location' || true
"$CACHE/bin/python" -c 'import numpy, chromadb' # fails the setup if the install did
echo "$WANT" > "$CACHE/WANT"
chmod -R a+rX "$CACHE"
echo "[venv] built: $CACHE ($(du -sh "$CACHE" | cut -f1))"
