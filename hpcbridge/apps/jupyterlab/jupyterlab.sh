#!/bin/bash
# JupyterLab as an hpcbridge session service: it listens on the port, under the base URL
# and with the token hpcbridge gives it (the proxy sends that token; users never see it).
# Origins: the browser reaches it through hpcbridge's proxy, whose host differs from the
# node's, so the WebSocket origin check is left to the proxy (only the owner gets through).
set -eo pipefail
exec "${HPCBRIDGE_JUPYTER:-jupyter}" lab --no-browser \
  --ip=0.0.0.0 --port="$HPCBRIDGE_SESSION_PORT" \
  --ServerApp.base_url="$HPCBRIDGE_BASE_URL" \
  --IdentityProvider.token="$HPCBRIDGE_SESSION_TOKEN" \
  --ServerApp.allow_origin='*' \
  --ServerApp.root_dir="${HPCBRIDGE_NOTEBOOK_DIR:-$HOME}"
