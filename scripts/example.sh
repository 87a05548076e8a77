#!/usr/bin/env bash
# Set up .venv and run the example notebook as a pipeline, locally (no AWS account, no Docker).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh core
exec .venv/bin/smstep run notebooks/abalone.ipynb "$@"
