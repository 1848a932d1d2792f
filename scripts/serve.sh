#!/usr/bin/env bash
# Install semroute into .venv and serve the bundled model and default config
# on 127.0.0.1:50051 (extra arguments go to `semroute serve`).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/setup-venv.sh
exec semroute serve "$@"
