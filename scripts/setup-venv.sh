#!/usr/bin/env bash
# Create .venv (once) and install semroute into it, editable, with the build
# steps (protobuf stubs, Cython extension). Sourced by serve.sh and test.sh.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PY="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
    "$PY" -m venv .venv
fi
. .venv/bin/activate
python -m pip install -q --upgrade pip
if [ -n "${SEMROUTE_EXTRAS:-}" ]; then
    python -m pip install -q -e ".[${SEMROUTE_EXTRAS}]"
else
    python -m pip install -q -e .
fi
