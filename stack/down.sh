#!/usr/bin/env bash
# Stop what stack/up.sh started, by pid file, in reverse start order. Idempotent.
#   bash stack/down.sh            # everything
#   bash stack/down.sh redis      # only these
# State (.stack/) is kept; `rm -rf .stack` after this for a cold start.
set -euo pipefail
# shellcheck source=stack/lib.sh
source "$(dirname "$0")/lib.sh"

[[ -d $STACK ]] || { log "no $STACK: nothing to stop"; exit 0; }
with_stack_lock "$0" "$@"

# shellcheck source=stack/prometheus.sh
source "$STACK_SRC/prometheus.sh"
prom_split "$@"   # Prometheus is not in COMPONENTS: it is stopped first
if (( ONLY_PROM )); then WANT=(); elif (( ${#OTHERS[@]} )); then WANT=("${OTHERS[@]}"); else WANT=("${COMPONENTS[@]}"); fi
(( PROM_WANTED )) && down_prometheus
for c in "${WANT[@]}"; do pidfile_of "$c" >/dev/null || exit 2; done
wanted() { local w; for w in "${WANT[@]}"; do [[ $w == "$1" ]] && return 0; done; return 1; }

for ((i = ${#COMPONENTS[@]} - 1; i >= 0; i--)); do
  c=${COMPONENTS[i]}
  wanted "$c" || continue
  if pid=$(pid_of "$c"); then
    t0=$(date +%s%N)
    # the hub stops its proxy and the single-user servers itself on TERM; PostgreSQL
    # waits for its clients on TERM and stops at once on INT (fast shutdown)
    [[ $c == postgres ]] && kill -INT "$pid" 2>/dev/null
    stop_pid "$pid" 30
    log "$(printf '%-10s stopped (pid %s) in %d ms' "$c" "$pid" $(( ($(date +%s%N) - t0) / 1000000 )))"
  else
    log "$(printf '%-10s not running' "$c")"
  fi
  rm -f "$(pidfile_of "$c")"
  if [[ $c == hub ]]; then
    # a proxy left behind by a hub that died hard
    ppid_file=$STACK/hub/jupyterhub-proxy.pid
    if [[ -s $ppid_file ]]; then
      ppid=$(tr -dc '0-9' <"$ppid_file")
      if alive "$ppid" && tr '\0' ' ' <"/proc/$ppid/cmdline" 2>/dev/null | grep -q configurable-http-proxy; then
        stop_pid "$ppid" 10; log "hub        stopped its leftover proxy (pid $ppid)"
      fi
      rm -f "$ppid_file"
    fi
    rm -f "$STACK/hub/extra_config.current"
  fi
done
