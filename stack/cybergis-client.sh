#!/usr/bin/env bash
# The unmodified CyberGIS-Compute client (PyPI cybergis-compute-client 0.2.6) in its own
# venv, .stack/cybergis-venv: it pins ipython==8.3.0 and jupyterlab-widgets==1.1.0, which
# clash with our JupyterLab 4, so it never goes into .venv. The CyberGIS compatibility
# tests (tests/integration/server/test_cybergis_compat.py) run it as a subprocess.
# Idempotent and quick when already there (one import). No root needed.
set -euo pipefail
# shellcheck source=stack/lib.sh
source "$(dirname "$0")/lib.sh"

CLIENT_VERSION=0.2.6
CG_VENV="$STACK/cybergis-venv"
PYTHON=${PYTHON:-python3}

installed() {
  [[ -x $CG_VENV/bin/python ]] && "$CG_VENV/bin/python" - "$CLIENT_VERSION" <<'EOF' 2>/dev/null
import sys
from importlib.metadata import version
import cybergis_compute_client  # noqa: F401  (the import itself must work)
sys.exit(0 if version("cybergis-compute-client") == sys.argv[1] else 1)
EOF
}

if installed; then
  exit 0
fi
log "cybergis-compute-client $CLIENT_VERSION: installing into $CG_VENV"
mkdir -p "$STACK"
rm -rf "$CG_VENV"
"$PYTHON" -m venv "$CG_VENV"
"$CG_VENV/bin/pip" install --quiet --disable-pip-version-check \
  "cybergis-compute-client==$CLIENT_VERSION"
installed || die "cybergis-compute-client $CLIENT_VERSION does not import from $CG_VENV"
log "cybergis-compute-client $CLIENT_VERSION ready"
