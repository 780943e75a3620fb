#!/usr/bin/env bash
# Generate src/api-types.ts from the OpenAPI document of the middleware (the
# one GET /api/v1/spec serves, built by server.openapi.build_openapi), so the
# panel's API types never drift from the server's pydantic models.
#
#   bash labextension/scripts/gen-api-types.sh [VENV]           rewrite src/api-types.ts
#   bash labextension/scripts/gen-api-types.sh [VENV] --check   fail if it is stale
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
ROOT="$(dirname "$HERE")"
VENV="$(cd "${1:-$ROOT/.venv}" && pwd)"
MODE="${2:-write}"
TARGET="$HERE/src/api-types.ts"

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

(cd "$ROOT" && "$VENV/bin/python" -c '
import json, sys
from server.openapi import build_openapi
json.dump(build_openapi(), sys.stdout, indent=1)
') >"$tmp/openapi.json"
(cd "$HERE" && node_modules/.bin/openapi-typescript "$tmp/openapi.json" -o "$tmp/api-types.ts" >/dev/null)

if [ "$MODE" = "--check" ]; then
  if ! diff -u "$TARGET" "$tmp/api-types.ts" >"$tmp/diff"; then
    head -40 "$tmp/diff" >&2
    echo "labextension: src/api-types.ts is stale (the OpenAPI document changed);" \
      "regenerate it with: bash labextension/scripts/gen-api-types.sh ${1:-}" >&2
    exit 1
  fi
  echo "labextension: src/api-types.ts matches the OpenAPI document"
else
  cp "$tmp/api-types.ts" "$TARGET"
  echo "labextension: wrote $TARGET"
fi
