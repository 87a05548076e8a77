#!/usr/bin/env bash
# Idempotent setup of the project's environments on a fresh machine.
#   scripts/setup.sh core   .venv with the SageMaker SDK v3 + jupyter_smstep and its prebuilt lab extension
#   scripts/setup.sh all    also the test tools, Debian chromium and .venv-v2 (SDK v2)
set -euo pipefail
cd "$(dirname "$0")/.."
what="${1:-core}"
PY="${PYTHON:-python3}"
export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1

say() { printf '\n== %s\n' "$*" >&2; }

if [ "$what" = all ]; then
  if ! command -v chromium >/dev/null 2>&1; then
    say "installing Debian's chromium (browser tests)"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
  fi
fi

if [ ! -f jupyter_smstep/labextension/static/style.js ] || { [ "$what" = all ] && [ ! -x labextension/node_modules/.bin/jest ]; }; then
  say "building the JupyterLab extension with npm (and its test tools: jest, eslint, prettier)"
  (cd labextension && npm ci --no-audit --no-fund --loglevel=error && npm run build:prod)
fi

if [ ! -x .venv/bin/python ]; then
  say "creating .venv (SageMaker SDK v3)"
  "$PY" -m venv .venv
fi
.venv/bin/pip install -q -U pip
if [ "$what" = all ]; then
  .venv/bin/pip install -q "sagemaker>=3,<4" -e ".[test]" 2>&1 | grep -v "^WARNING: Location" || true
else
  .venv/bin/pip install -q "sagemaker>=3,<4" -e . 2>&1 | grep -v "^WARNING: Location" || true
fi
.venv/bin/python -c "import jupyter_smstep, sagemaker" >/dev/null

if [ "$what" = all ]; then
  if [ ! -x .venv-v2/bin/python ]; then
    say "creating .venv-v2 (SageMaker SDK v2, what Studio ships)"
    "$PY" -m venv .venv-v2
  fi
  .venv-v2/bin/pip install -q -U pip
  .venv-v2/bin/pip install -q "sagemaker>=2.245,<3" -e . pytest pytest-timeout nbval pyarrow joblib \
      "moto[server,s3,sagemaker,iam,sts,logs]>=5.2" 2>&1 | grep -v "^WARNING: Location" || true
  .venv-v2/bin/python -c "import jupyter_smstep, sagemaker; assert sagemaker.__version__.startswith('2.')"
fi
