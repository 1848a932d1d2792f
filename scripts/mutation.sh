#!/usr/bin/env bash
# Mutation testing of the core modules (not CI): installs mutmut into .venv, runs it
# over the modules and tests in pyproject.toml's [tool.mutmut] and writes
# benchmarks/results/mutation-<ts>.json. Arguments go to python -m benchmarks.mutation.
set -euo pipefail
cd "$(dirname "$0")/.."
SEMROUTE_EXTRAS=dev . scripts/setup-venv.sh
python -m pip install -q "mutmut==3.8.1"
rm -rf mutants  # a fresh copy of the code and tests
exec python -m benchmarks.mutation "$@"
