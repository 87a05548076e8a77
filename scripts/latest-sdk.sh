#!/usr/bin/env bash
# The SDK-facing tests (tests marked sdk_line: tests/sdk, local, remote, test_cli.py, notebooks/) against
# the newest SageMaker SDK v3 and v2 on PyPI, not the versions .ci/constraints-*.txt pin: SDK drift is
# seen the day a release ships. Environments: .venv-latest-v3 and .venv-latest-v2 (kept between runs).
#   bash scripts/latest-sdk.sh [v3|v2|both] [pytest options...]
set -euo pipefail
cd "$(dirname "$0")/.."
which="${1:-both}"
[ $# -gt 0 ] && shift
PY="${PYTHON:-python3}"
"$PY" -m uv --version >/dev/null 2>&1 || "$PY" -m pip install -q uv
[ -f jupyter_smstep/labextension/static/style.js ] || (cd labextension && npm ci --no-audit --no-fund && npm run build:prod)
status=0
for line in v3 v2; do
  [ "$which" = both ] || [ "$which" = "$line" ] || continue
  venv=".venv-latest-$line"
  spec="sagemaker>=3,<4"
  [ "$line" = v2 ] && spec="sagemaker>=2.245,<3"
  [ -x "$venv/bin/python" ] || "$PY" -m uv venv -q --seed "$venv"
  "$PY" -m uv pip install -q --upgrade --python "$venv/bin/python" "$spec" -e ".[test,lab]" pytest-xdist scikit-learn
  echo "== $line: $("$venv/bin/python" -c 'import importlib.metadata as m; print("sagemaker", m.version("sagemaker"))')"
  "$venv/bin/python" -m pytest -q -n 2 --dist loadfile -W ignore::DeprecationWarning --nbval-lax --nbval-current-env \
    -m "sdk_line and not browser" --ignore=tests/browser "$@" tests notebooks || status=1
done
exit $status
