# Shared by build.sh and test.sh (sourced, not run). Expects VENV_ARG set.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(dirname "$HERE")"

if [ ! -d "$VENV_ARG" ]; then
  echo "labextension: virtualenv '$VENV_ARG' not found (make one with: python3 -m venv $VENV_ARG && $VENV_ARG/bin/pip install jupyterlab)" >&2
  exit 1
fi
VENV="$(cd "$VENV_ARG" && pwd)"
export PATH="$VENV/bin:$PATH"
export YARN_ENABLE_TELEMETRY=0
export YARN_ENABLE_PROGRESS_BARS=0

if ! command -v node >/dev/null 2>&1; then
  echo "labextension: node is not installed (Node >= 18 is needed to build the JupyterLab panel)" >&2
  exit 1
fi
if [ ! -x "$VENV/bin/jlpm" ]; then
  echo "labextension: $VENV/bin/jlpm missing; installing jupyterlab into $VENV" >&2
  "$VENV/bin/python" -m pip install -q 'jupyterlab>=4.2'
fi

# sha256 over the given paths (files or folders), stable across checkouts.
content_hash() {
  (cd "$HERE" && find "$@" -type f -not -path '*/__tests__/*' 2>/dev/null | LC_ALL=C sort | xargs sha256sum | sha256sum | cut -c1-64)
}

# Install node_modules unless they match package.json + yarn.lock already.
ensure_node_modules() {
  local want have stamp="$HERE/node_modules/.hpcbridge-install-stamp"
  want="$(content_hash package.json yarn.lock .yarnrc.yml)"
  have="$(cat "$stamp" 2>/dev/null || true)"
  if [ "$want" = "$have" ] && [ -d "$HERE/node_modules/@jupyter/builder" ]; then
    return 0
  fi
  local t0=$SECONDS flags=()
  if [ "${CI:-}" = "true" ]; then
    flags+=(--immutable)   # CI must not rewrite the lock file
  fi
  echo "labextension: installing node packages (jlpm install ${flags[*]:-})"
  local log
  log="$(mktemp)"
  if ! (cd "$HERE" && jlpm install "${flags[@]}" >"$log" 2>&1); then
    cat "$log" >&2
    rm -f "$log"
    echo "labextension: jlpm install failed (log above)" >&2
    return 1
  fi
  rm -f "$log"
  # the lock file may have been rewritten: hash it again
  content_hash package.json yarn.lock .yarnrc.yml >"$stamp"
  echo "labextension: node packages installed in $((SECONDS - t0)) s"
}
