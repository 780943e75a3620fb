# Prometheus in the test stack (sourced by up.sh, down.sh and status.sh after lib.sh).
# Not one of lib.sh's COMPONENTS: it is started last, stopped first, and asked for by name
# (`bash stack/up.sh prometheus`) or as part of "everything".
# shellcheck shell=bash

PROM_PORT=9091
PROM_DIR=$STACK/prometheus
PROM_BIN=/usr/bin/prometheus

prom_pid() {
  local pid
  [[ -s $PROM_DIR/prometheus.pid ]] || return 1
  pid=$(tr -dc '0-9' <"$PROM_DIR/prometheus.pid")
  alive "$pid" || return 1
  [[ $(cat "/proc/$pid/comm" 2>/dev/null) == prometheus* ]] || return 1
  echo "$pid"
}

prom_ready() { curl -sf -o /dev/null --max-time 2 "http://127.0.0.1:$PROM_PORT/-/ready"; }

# prom_config: the config, the scrape token and the targets folder (cheap, every run);
# a running Prometheus whose config changed reloads it (SIGHUP)
prom_config() {
  install -d -m 755 "$PROM_DIR" "$PROM_DIR/targets" "$PROM_DIR/data"
  [[ -s $PROM_DIR/metrics.token ]] ||
    (umask 077; head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$PROM_DIR/metrics.token")
  if render "$STACK_SRC/prometheus.yml.in" "PROM_PORT=$PROM_PORT" |
      write_if_changed "$PROM_DIR/prometheus.yml" 644; then
    local pid
    if pid=$(prom_pid); then log "prometheus: config changed, reloading"; kill -HUP "$pid"; fi
  fi
  return 0
}

up_prometheus() {
  prom_config
  if ! prom_pid >/dev/null; then
    port_free prometheus "$PROM_PORT"
    setsid "$PROM_BIN" --config.file="$PROM_DIR/prometheus.yml" \
      --storage.tsdb.path="$PROM_DIR/data" --storage.tsdb.retention.time=2d \
      --web.listen-address="127.0.0.1:$PROM_PORT" \
      </dev/null >>"$PROM_DIR/prometheus.log" 2>&1 &
    echo $! >"$PROM_DIR/prometheus.pid"
  fi
  wait_for 30 prometheus prom_ready ||
    { tail -20 "$PROM_DIR/prometheus.log" >&2; die "prometheus did not answer on :$PROM_PORT"; }
}

down_prometheus() {
  local pid
  if pid=$(prom_pid); then
    stop_pid "$pid" 30
    log "$(printf '%-10s stopped (pid %s)' prometheus "$pid")"
  else
    log "$(printf '%-10s not running' prometheus)"
  fi
  rm -f "$PROM_DIR/prometheus.pid"
}

prom_status_line() {
  local pid state
  if pid=$(prom_pid); then state=running; else state=stopped; pid=-; fi
  printf '%-10s %-8s %-8s %s\n' prometheus "$state" "$pid" "$PROM_PORT"
}

# prom_split ARGS...: sets PROM_WANTED (1 when asked for, or nothing named) and OTHERS
# (the components of lib.sh that were named); ONLY_PROM=1 when prometheus alone was named
prom_split() {
  PROM_WANTED=1; OTHERS=(); ONLY_PROM=0
  (( $# )) || return 0
  PROM_WANTED=0
  local a
  for a in "$@"; do
    if [[ $a == prometheus ]]; then PROM_WANTED=1; else OTHERS+=("$a"); fi
  done
  (( ${#OTHERS[@]} )) || ONLY_PROM=1
}
