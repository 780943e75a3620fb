#!/usr/bin/env bash
# Install what the real test stack needs (Debian 12, as root). Idempotent and quick
# when everything is already there: one dpkg-query, one getent, one file test.
#   - apt: munge slurm-wlm slurmdbd mariadb-server openssh-server redis-server chromium ...
#   - the unprivileged login/job user `hpcuser`
#   - npm configurable-http-proxy into .stack/hub/ (JupyterHub itself comes from the venv)
set -euo pipefail
# shellcheck source=stack/lib.sh
source "$(dirname "$0")/lib.sh"

[[ $(id -u) -eq 0 ]] || die "the test stack installs system packages and users: run as root"

APT_PACKAGES=(
  munge slurm-wlm slurm-client slurmdbd mariadb-server mariadb-client
  openssh-server openssh-client redis-server redis-tools chromium
  postgresql postgresql-client
  prometheus
  procps curl ca-certificates util-linux passwd
)

missing_packages() {
  # prints the packages that are not fully installed
  local out
  out=$(dpkg-query -W -f='${Package} ${db:Status-Abbrev}\n' "${APT_PACKAGES[@]}" 2>/dev/null || true)
  local p
  for p in "${APT_PACKAGES[@]}"; do
    grep -qE "^$p ii" <<<"$out" || echo "$p"
  done
}

install_apt() {
  local missing=("$@")
  log "apt: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  # Keep apt from starting the packages' own services on their default ports
  # (no systemd here; invoke-rc.d honours policy-rc.d). Removed again afterwards.
  local policy=/usr/sbin/policy-rc.d own_policy=0
  if [[ ! -e $policy ]]; then
    printf '#!/bin/sh\nexit 101\n' >"$policy"; chmod 755 "$policy"; own_policy=1
    trap 'rm -f /usr/sbin/policy-rc.d' EXIT
  fi
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  if (( own_policy )); then rm -f "$policy"; trap - EXIT; fi
}

mapfile -t missing < <(missing_packages)
command -v node >/dev/null 2>&1 || missing+=(nodejs)
command -v npm >/dev/null 2>&1 || missing+=(npm)
if (( ${#missing[@]} )); then
  install_apt "${missing[@]}"
fi

# munge needs a key; Debian's postinst normally makes one.
if [[ ! -s /etc/munge/munge.key ]]; then
  log "munge: creating /etc/munge/munge.key"
  install -d -o munge -g munge -m 700 /etc/munge
  mungekey --create --keyfile=/etc/munge/munge.key
  chown munge:munge /etc/munge/munge.key; chmod 600 /etc/munge/munge.key
fi

# The job user. sshd runs with UsePAM no, so the account must not be locked ('!').
if ! getent passwd "$SSH_USER" >/dev/null; then
  log "user: creating $SSH_USER"
  useradd -m -s /bin/bash "$SSH_USER"
fi
if [[ "$(getent shadow "$SSH_USER" | cut -d: -f2)" != '*' ]]; then
  usermod -p '*' "$SSH_USER"
fi
# JupyterLab for the job user (the bundled `jupyterlab` session app), as a site installs it
if [[ ! -x /home/$SSH_USER/.hpcbridge-jupyter/bin/jupyter ]]; then
  log "pip: installing JupyterLab for $SSH_USER into ~/.hpcbridge-jupyter"
  runuser -u "$SSH_USER" -- bash -c 'python3 -m venv ~/.hpcbridge-jupyter && ~/.hpcbridge-jupyter/bin/pip install -q "jupyterlab>=4,<5" ipykernel'
fi

# configurable-http-proxy for JupyterHub, private to this checkout.
mkdir -p "$STACK/hub"
if [[ ! -x "$STACK/hub/node_modules/.bin/configurable-http-proxy" ]]; then
  log "npm: installing configurable-http-proxy into .stack/hub"
  [[ -f "$STACK/hub/package.json" ]] || echo '{"name": "hpcbridge-test-hub", "private": true}' >"$STACK/hub/package.json"
  (cd "$STACK/hub" && npm install --no-audit --no-fund --loglevel=error 'configurable-http-proxy@^5' >/dev/null)
fi
