#!/usr/bin/env bash
# Checks of the JupyterLab panel (no browser): lint (eslint + prettier), that
# src/api-types.ts still matches the OpenAPI document the Python code builds,
# then the jest unit tests (ts-jest).
#
#   bash labextension/test.sh [VENV] [jest args...]
#
# Installs the node packages with the venv's jlpm if needed.
VENV_ARG="${1:-.venv}"
shift || true
# shellcheck source=labextension/_common.sh
source "$(dirname "${BASH_SOURCE[0]}")/_common.sh"

ensure_node_modules
cd "$HERE"
jlpm run lint
bash scripts/gen-api-types.sh "$VENV" --check
exec jlpm run test --ci "$@"
