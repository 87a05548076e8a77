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

# Each part writes to its own log, shown only if it fails. With "all", Debian's chromium installs
# while npm builds the lab extension, and then the two environments install side by side (pip's
# editable install copies the built extension, so both wait for npm): about half the time of one
# after the other.
logs="$(mktemp -d)"
trap 'rm -rf "$logs"' EXIT
part() {  # part NAME COMMAND...: run COMMAND, its output in a log printed only if it fails
  local name="$1" started=$SECONDS; shift
  if ! "$@" >"$logs/$name.log" 2>&1; then
    cat "$logs/$name.log" >&2
    echo "!! setup failed: $name" >&2
    return 1
  fi
  echo "   $name: done in $((SECONDS - started)) s" >&2
}
wait_all() {  # wait for the background parts; fail if any failed
  local failed=0 pid
  for pid in "$@"; do wait "$pid" || failed=1; done
  return $failed
}

chromium_part() {
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium
}

labextension_part() {
  (cd labextension && npm ci --no-audit --no-fund --loglevel=error && npm run build:prod)
}

v3_part() {  # && throughout: errexit does not apply inside "if ! part ..."
  { [ -x .venv/bin/python ] || "$PY" -m venv .venv; } &&
    .venv/bin/pip install -q -U pip &&
    if [ "$what" = all ]; then
      .venv/bin/pip install -q "sagemaker>=3,<4" -e ".[test]"
    else
      .venv/bin/pip install -q "sagemaker>=3,<4" -e .
    fi &&
    .venv/bin/python -c "import jupyter_smstep, sagemaker"
}

v2_part() {
  { [ -x .venv-v2/bin/python ] || "$PY" -m venv .venv-v2; } &&
    .venv-v2/bin/pip install -q -U pip &&
    .venv-v2/bin/pip install -q "sagemaker>=2.245,<3" -e . pytest pytest-timeout nbval pyarrow joblib \
      "moto[server,s3,sagemaker,iam,sts,logs]>=5.2" &&
    .venv-v2/bin/python -c "import jupyter_smstep, sagemaker; assert sagemaker.__version__.startswith('2.')"
}

pids=()
if [ "$what" = all ] && ! command -v chromium >/dev/null 2>&1; then
  say "installing Debian's chromium (browser tests), in the background"
  part chromium chromium_part & pids+=($!)
fi

if [ ! -f jupyter_smstep/labextension/static/style.js ] || { [ "$what" = all ] && [ ! -x labextension/node_modules/.bin/jest ]; }; then
  say "building the JupyterLab extension with npm (and its test tools: jest, eslint, prettier)"
  part labextension labextension_part || { wait_all "${pids[@]}"; exit 1; }
fi

say "installing .venv (SageMaker SDK v3)"
part v3 v3_part & pids+=($!)
if [ "$what" = all ]; then
  say "installing .venv-v2 (SageMaker SDK v2, what Studio ships)"
  part v2 v2_part & pids+=($!)
fi
wait_all "${pids[@]}"
say "setup done"
