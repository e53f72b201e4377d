#!/usr/bin/env bash
# The whole test suite: unit tests and end-to-end tests against the sandbox
# cluster (brought up once for the run, and down at its end).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
exec .venv/bin/python -m pytest "$@"
