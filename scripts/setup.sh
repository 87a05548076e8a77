#!/usr/bin/env bash
# Idempotent setup of the project's environments on a fresh machine.
#   scripts/setup.sh core   .venv with the SageMaker SDK v3, jupyter_smstep, its prebuilt lab extension, JupyterLab
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

# Each environment installs the versions CI was last green with, from its committed constraints file
# (pip freeze of a green run); scripts/latest-sdk.sh tries the newest SDKs instead. uv installs them
# (a fresh SDK v3 environment: about 10 s against about 160 s with pip); where uv cannot be had, pip.
V3_CONSTRAINTS="${SMSTEP_V3_CONSTRAINTS-.ci/constraints-v3.txt}"
V2_CONSTRAINTS="${SMSTEP_V2_CONSTRAINTS-.ci/constraints-v2.txt}"
UV=()
if "$PY" -m uv --version >/dev/null 2>&1 || "$PY" -m pip install -q uv >/dev/null 2>&1; then
  UV=("$PY" -m uv)
fi

make_venv() {  # make_venv DIR: a virtual environment with pip in it (for the user's own installs)
  [ -x "$1/bin/python" ] && return 0
  if [ ${#UV[@]} -gt 0 ]; then "${UV[@]}" venv -q --seed --python "$PY" "$1"; else "$PY" -m venv "$1"; fi
}

install() {  # install DIR CONSTRAINTS ARGS...: pip install ARGS into DIR's environment, within CONSTRAINTS
  local venv="$1" constraints="$2"; shift 2
  local with=()
  [ -n "$constraints" ] && with=(-c "$constraints")
  if [ ${#UV[@]} -gt 0 ]; then
    "${UV[@]}" pip install -q --python "$venv/bin/python" "${with[@]}" "$@"
  else
    "$venv/bin/pip" install -q "${with[@]}" "$@"
  fi
}

v3_part() {  # && throughout: errexit does not apply inside "if ! part ..."
  local extra=".[lab]"
  [ "$what" = all ] && extra=".[lab,test]"
  make_venv .venv &&
    install .venv "$V3_CONSTRAINTS" "sagemaker>=3,<4" -e "$extra" &&
    .venv/bin/python -c "import jupyter_smstep, sagemaker"
}

v2_part() {
  make_venv .venv-v2 &&
    install .venv-v2 "$V2_CONSTRAINTS" "sagemaker>=2.245,<3" -e . pytest pytest-timeout pytest-xdist nbval \
      pyarrow joblib scikit-learn "moto[server,s3,sagemaker,iam,sts,logs]>=5.2" &&
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
