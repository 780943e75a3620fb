#!/usr/bin/env bash
# Build the JupyterLab panel into hpcbridge/labextension and link it into a
# virtualenv for development (editable installs never copy data_files).
#
#   bash labextension/build.sh VENV        (the Makefile: bash labextension/build.sh .venv)
#
# - installs node packages with the venv's jlpm (JupyterLab's bundled yarn) when
#   package.json / yarn.lock changed;
# - builds (tsc + jupyter-builder) only when src/, style/, package.json,
#   tsconfig.json or yarn.lock changed since the last build (content hash);
# - links VENV/share/jupyter/labextensions/hpcbridge -> <repo>/hpcbridge/labextension
#   (what `jupyter-builder develop --overwrite` does) and copies
#   jupyter_ext/jupyter_server_config.d/hpcbridge.json into VENV/etc/jupyter/jupyter_server_config.d/.
# Set HPCBRIDGE_FORCE_BUILD=1 to rebuild regardless.
VENV_ARG="${1:-.venv}"
# shellcheck source=labextension/_common.sh
source "$(dirname "${BASH_SOURCE[0]}")/_common.sh"

T0=$SECONDS
OUT="$ROOT/hpcbridge/labextension"
STAMP="$HERE/.build-stamp"

if [ ! -x "$VENV/bin/jupyter-builder" ]; then
  echo "labextension: installing jupyter_builder into $VENV"
  "$VENV/bin/python" -m pip install -q 'jupyter_builder>=1.2'
fi

want="$(content_hash src style package.json yarn.lock tsconfig.json .yarnrc.yml)"
have="$(cat "$STAMP" 2>/dev/null || true)"
if [ "${HPCBRIDGE_FORCE_BUILD:-0}" != "1" ] && [ "$want" = "$have" ] \
   && [ -f "$OUT/package.json" ] && compgen -G "$OUT/static/remoteEntry.*.js" >/dev/null; then
  echo "labextension: up to date ($OUT)"
else
  ensure_node_modules
  want="$(content_hash src style package.json yarn.lock tsconfig.json .yarnrc.yml)"
  t1=$SECONDS
  rm -f "$STAMP"
  (cd "$HERE" && jlpm run build)
  echo "$want" >"$STAMP"
  echo "labextension: built into $OUT in $((SECONDS - t1)) s"
fi

# Development link into the venv.
DEST="$VENV/share/jupyter/labextensions/hpcbridge"
mkdir -p "$(dirname "$DEST")"
if [ -e "$DEST" ] && [ ! -L "$DEST" ]; then
  rm -rf "$DEST"   # a copy from a non-editable install: replace it by the link
fi
ln -sfn "$OUT" "$DEST"

CONF="$ROOT/jupyter_ext/jupyter_server_config.d/hpcbridge.json"
if [ -f "$CONF" ]; then
  mkdir -p "$VENV/etc/jupyter/jupyter_server_config.d"
  cp "$CONF" "$VENV/etc/jupyter/jupyter_server_config.d/hpcbridge.json"
else
  echo "labextension: $CONF not found; server extension config not installed"
fi
echo "labextension: linked $DEST -> $OUT ($((SECONDS - T0)) s)"
