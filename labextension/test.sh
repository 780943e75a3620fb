#!/usr/bin/env bash
# Unit tests of the JupyterLab panel (jest + ts-jest; no browser).
#
#   bash labextension/test.sh [VENV] [jest args...]
#
# Installs the node packages with the venv's jlpm if needed, then runs jest.
VENV_ARG="${1:-.venv}"
shift || true
# shellcheck source=labextension/_common.sh
source "$(dirname "${BASH_SOURCE[0]}")/_common.sh"

ensure_node_modules
cd "$HERE"
exec jlpm run test --ci "$@"
