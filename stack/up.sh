#!/usr/bin/env bash
# Bring up the real test stack (idempotent; a second run takes about a second):
#   munge -> mariadb (127.0.0.1:3307) -> slurmdbd (6819) -> slurmctld -> slurmd
#   sshd (127.0.0.1:2222, user hpcuser) -> redis (127.0.0.1:6390) -> PostgreSQL (127.0.0.1:5433)
#   -> JupyterHub (127.0.0.1:8000) -> Prometheus (127.0.0.1:9091, stack/prometheus.sh)
# Each component starts only when it is not already running, then up.sh waits until it
# answers. Everything lives in <repo>/.stack; .stack/stack.json describes it for the tests.
#
#   bash stack/up.sh              # everything
#   bash stack/up.sh redis hub    # only these (in stack order)
#
# HPCBRIDGE_HUB_EXTRA_CONFIG=/path/file.py is exec'd at the end of the hub's config
# (takes effect when the hub starts: `bash stack/down.sh hub; bash stack/up.sh hub`).
set -euo pipefail
# shellcheck source=stack/lib.sh
source "$(dirname "$0")/lib.sh"

[[ $(id -u) -eq 0 ]] || die "the test stack runs system daemons: run as root"

mkdir -p "$STACK"
with_stack_lock "$0" "$@"

bash "$STACK_SRC/install.sh"

# shellcheck source=stack/prometheus.sh
source "$STACK_SRC/prometheus.sh"
prom_split "$@"   # Prometheus is not in COMPONENTS: it is started last
if (( ONLY_PROM )); then WANT=(); elif (( ${#OTHERS[@]} )); then WANT=("${OTHERS[@]}"); else WANT=("${COMPONENTS[@]}"); fi
for c in "${WANT[@]}"; do pidfile_of "$c" >/dev/null || exit 2; done
wanted() { local w; for w in "${WANT[@]}"; do [[ $w == "$1" ]] && return 0; done; return 1; }

# Daemons that drop root (munge, mysql, slurm) must reach their folders. Below a folder
# they cannot traverse (a checkout in /root, mode 700) those folders live in
# /var/lib/hpcbridge-stack/<hash of the checkout path>, symlinked from .stack/.
DSTACK=$STACK
for u in slurm mysql munge postgres; do
  runuser -u "$u" -- test -x "$STACK" && continue
  DSTACK=/var/lib/hpcbridge-stack/$(printf '%s' "$STACK" | md5sum | cut -c1-12)
  break
done
if [[ $DSTACK != "$STACK" ]]; then
  install -d -m 755 /var/lib/hpcbridge-stack "$DSTACK"
  for d in munge mysql slurm postgres; do
    [[ -L $STACK/$d ]] && continue
    [[ -e $STACK/$d ]] && die "$STACK/$d is a folder, but its daemon cannot reach it: rm -rf $STACK"
    rm -rf "${DSTACK:?}/$d"          # a new .stack: start from scratch there too
    mkdir -p "$DSTACK/$d"
    ln -s "$DSTACK/$d" "$STACK/$d"
  done
  log "daemon folders in $DSTACK (users slurm/mysql/munge/postgres cannot traverse $REPO)"
fi

wanted hub && ! [[ -x "$VENV/bin/jupyterhub" && -x "$VENV/bin/jupyterhub-singleuser" ]] &&
  die "no JupyterHub in $VENV (run \`make install\`, or pip install -e '.[test]' into $VENV)"

if [[ -n ${HPCBRIDGE_HUB_EXTRA_CONFIG:-} ]]; then
  HPCBRIDGE_HUB_EXTRA_CONFIG=$(realpath -m "$HPCBRIDGE_HUB_EXTRA_CONFIG"); export HPCBRIDGE_HUB_EXTRA_CONFIG
fi

RESTART=()   # components whose generated config changed while running

secret() {  # secret FILE: a random hex string made once
  [[ -s $1 ]] || { (umask 077; head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$1"); }
  cat "$1"
}

# ---------------------------------------------------------------- configs (cheap, every run)
gen_configs() {
  install -d -m 755 "$STACK"
  install -d -o munge -g munge -m 700 "$DSTACK/munge"
  install -d -o mysql -g mysql -m 750 "$DSTACK/mysql"
  install -d -o slurm -g slurm -m 755 "$DSTACK/slurm" "$DSTACK/slurm/state"
  install -d -m 755 "$DSTACK/slurm/spool"
  install -d -m 700 "$STACK/ssh"
  install -d -m 755 "$STACK/redis" "$STACK/hub" "$STACK/hub/home"
  install -d -o postgres -g postgres -m 700 "$DSTACK/postgres"

  # Slurm (in /etc/slurm so that sbatch over ssh finds it without SLURM_CONF)
  install -d -m 755 /etc/slurm
  local dbpass; dbpass=$(secret "$STACK/mysql/slurm_db_password")
  if render "$STACK_SRC/slurm.conf.in" "DSTACK=$DSTACK" | write_if_changed /etc/slurm/slurm.conf 644; then
    RESTART+=(slurmctld slurmd)
  fi
  if render "$STACK_SRC/slurmdbd.conf.in" "DBPASS=$dbpass" "DSTACK=$DSTACK" | write_if_changed /etc/slurm/slurmdbd.conf 600; then
    RESTART+=(slurmdbd)
  fi
  chown slurm:slurm /etc/slurm/slurmdbd.conf

  # sshd: host key, client key, known_hosts, authorized_keys
  local k=$STACK/ssh
  [[ -s $k/ssh_host_ed25519_key ]] || ssh-keygen -q -t ed25519 -N '' -C hpcbridge-test-stack-host -f "$k/ssh_host_ed25519_key"
  [[ -s $k/id_ed25519 ]] || ssh-keygen -q -t ed25519 -N '' -C hpcbridge-test-stack -f "$k/id_ed25519"
  printf '[127.0.0.1]:%s %s\n' "$SSH_PORT" "$(cut -d' ' -f1,2 "$k/ssh_host_ed25519_key.pub")" |
    write_if_changed "$k/known_hosts" 644 || true
  local home; home=$(getent passwd "$SSH_USER" | cut -d: -f6)
  install -d -o "$SSH_USER" -g "$SSH_USER" -m 700 "$home/.ssh"
  local ak=$home/.ssh/authorized_keys
  { [[ -f $ak ]] && grep -v ' hpcbridge-test-stack$' "$ak" || true; cat "$k/id_ed25519.pub"; } |
    write_if_changed "$ak" 600 || true
  chown "$SSH_USER:$SSH_USER" "$ak"
  render "$STACK_SRC/sshd_config.in" | write_if_changed "$k/sshd_config" 600 && RESTART+=(sshd)

  # postgres: the role's password (with a '%', '@' and '/', which URLs must quote)
  [[ -s $STACK/postgres.password ]] ||
    (umask 077; printf 'pg%%@/%s' "$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')" >"$STACK/postgres.password")

  # redis
  render "$STACK_SRC/redis.conf.in" | write_if_changed "$STACK/redis/redis.conf" 644 && RESTART+=(redis)

  # JupyterHub: fixed test tokens made once, config rendered from the committed template
  if [[ ! -s $STACK/hub/tokens.json ]]; then
    local t=() n
    for n in alice bob admin service; do t+=("\"$n\": \"$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')\""); done
    (umask 077; local IFS=,; printf '{%s}\n' "${t[*]}" | sed 's/,"/, "/g' >"$STACK/hub/tokens.json")
  fi
  render "$STACK_SRC/jupyterhub_config.py" | write_if_changed "$STACK/hub/jupyterhub_config.py" 644 && RESTART+=(hub)
  # asked for a hub extension the running hub was not started with: restart the hub
  if [[ -n ${HPCBRIDGE_HUB_EXTRA_CONFIG:-} &&
        $HPCBRIDGE_HUB_EXTRA_CONFIG != "$(cat "$STACK/hub/extra_config.current" 2>/dev/null)" ]]; then
    [[ -f $HPCBRIDGE_HUB_EXTRA_CONFIG ]] || die "HPCBRIDGE_HUB_EXTRA_CONFIG=$HPCBRIDGE_HUB_EXTRA_CONFIG: no such file"
    RESTART+=(hub)
  fi
  return 0
}

# ---------------------------------------------------------------- start + readiness, per component
# port_free NAME PORT: refuse to start over someone else's listener (e.g. a stack started
# from another checkout, or one whose .stack was deleted while it ran)
port_free() {
  tcp_open 127.0.0.1 "$2" || return 0
  die "$1: port $2 is already in use by a process this stack did not start (pid file $(pidfile_of "${1%% *}")); stop it first (bash stack/down.sh in the checkout that started it)"
}
up_munge() {
  if running munge || munge_answers; then return 0; fi
  install -d -o munge -g munge -m 755 /run/munge
  runuser -u munge -- /usr/sbin/munged --force \
    --pid-file="$DSTACK/munge/munged.pid" --log-file="$DSTACK/munge/munged.log" \
    --seed-file="$DSTACK/munge/munged.seed"
  wait_for 10 munge munge_answers
}

MYSQL_SOCK() { echo "$DSTACK/mysql/mysqld.sock"; }
mysql_root() { mariadb --no-defaults --protocol=socket -S "$(MYSQL_SOCK)" -u root "$@"; }
up_mariadb() {
  local data=$DSTACK/mysql/data
  if ! running mariadb; then
    if [[ ! -d $data/mysql ]]; then
      log "mariadb: initialising $data"
      rm -rf "$data"
      mariadb-install-db --no-defaults --user=mysql --datadir="$data" \
        --auth-root-authentication-method=socket --skip-test-db >"$STACK/mysql/install.log" 2>&1 ||
        { cat "$STACK/mysql/install.log" >&2; die "mariadb-install-db failed"; }
    fi
    port_free mariadb "$MARIADB_PORT"
    setsid /usr/sbin/mariadbd --no-defaults --user=mysql --datadir="$data" \
      --socket="$(MYSQL_SOCK)" --port="$MARIADB_PORT" --bind-address=127.0.0.1 \
      --pid-file="$DSTACK/mysql/mariadbd.pid" --log-error="$DSTACK/mysql/mariadbd.log" \
      --skip-name-resolve --innodb-buffer-pool-size=64M </dev/null >/dev/null 2>&1 &
  fi
  wait_for 60 mariadb mysql_root -e 'SELECT 1' ||
    { tail -20 "$STACK/mysql/mariadbd.log" >&2; die "mariadb did not answer"; }
  local pw; pw=$(cat "$STACK/mysql/slurm_db_password")
  mysql_root -e "
    CREATE USER IF NOT EXISTS 'slurm'@'127.0.0.1' IDENTIFIED BY '$pw';
    CREATE USER IF NOT EXISTS 'slurm'@'localhost' IDENTIFIED BY '$pw';
    ALTER USER 'slurm'@'127.0.0.1' IDENTIFIED BY '$pw';
    ALTER USER 'slurm'@'localhost' IDENTIFIED BY '$pw';
    GRANT ALL ON slurm_acct_db.* TO 'slurm'@'127.0.0.1';
    GRANT ALL ON slurm_acct_db.* TO 'slurm'@'localhost';"
}

up_slurmdbd() {
  running slurmdbd || { port_free slurmdbd "$SLURMDBD_PORT"; /usr/sbin/slurmdbd; }
  wait_for 60 slurmdbd tcp_open 127.0.0.1 "$SLURMDBD_PORT" ||
    { tail -20 "$STACK/slurm/slurmdbd.log" >&2; die "slurmdbd did not answer"; }
}

ctld_up() { scontrol ping 2>/dev/null | grep -q 'is UP'; }
up_slurmctld() {
  running slurmctld || { port_free slurmctld "$SLURMCTLD_PORT"; /usr/sbin/slurmctld; }
  wait_for 30 slurmctld ctld_up ||
    { tail -20 "$STACK/slurm/slurmctld.log" >&2; die "slurmctld did not answer"; }
}

node_state() { sinfo -h -N -n "$NODE_NAME" -o %T 2>/dev/null | head -1; }
node_ready() { [[ $(node_state) =~ ^(idle|mixed|allocated|completing)$ ]]; }
up_slurmd() {
  running slurmd || { port_free slurmd "$SLURMD_PORT"; /usr/sbin/slurmd; }
  local i
  for ((i = 0; i < 300; i++)); do
    node_ready && return 0
    case "$(node_state)" in
      drain*|down|down\*|fail*)  # a drain survives restarts in the state dir
        scontrol update nodename="$NODE_NAME" state=resume 2>/dev/null || true ;;
    esac
    sleep 0.1
  done
  tail -20 "$STACK/slurm/slurmd.log" >&2
  die "slurm node $NODE_NAME is '$(node_state)', not idle"
}

ssh_true() {
  ssh -F /dev/null -o BatchMode=yes -o IdentitiesOnly=yes -o StrictHostKeyChecking=yes \
    -o UserKnownHostsFile="$STACK/ssh/known_hosts" -o GlobalKnownHostsFile=/dev/null \
    -o ConnectTimeout=5 -o LogLevel=ERROR -i "$STACK/ssh/id_ed25519" -p "$SSH_PORT" \
    "$SSH_USER@127.0.0.1" true
}
up_sshd() {
  if ! running sshd; then
    port_free sshd "$SSH_PORT"
    install -d -m 755 /run/sshd
    /usr/sbin/sshd -f "$STACK/ssh/sshd_config" -E "$STACK/ssh/sshd.log"
  fi
  wait_for 10 sshd ssh_true || { tail -20 "$STACK/ssh/sshd.log" >&2; die "ssh $SSH_USER@127.0.0.1:$SSH_PORT true failed"; }
}

redis_ping() { [[ $(/usr/bin/redis-cli -h 127.0.0.1 -p "$REDIS_PORT" ping 2>/dev/null) == PONG ]]; }
up_redis() {
  running redis || { port_free redis "$REDIS_PORT"; /usr/bin/redis-server "$STACK/redis/redis.conf"; }
  wait_for 10 redis redis_ping || { tail -20 "$STACK/redis/redis.log" >&2; die "redis did not answer"; }
}

# PostgreSQL: a private cluster (own data dir, port 5433, socket in its folder), one role and
# one database for hpcbridge; the password is made once (a '%' in it proves URL quoting).
PG_BIN=/usr/lib/postgresql/15/bin
pg_ready() { "$PG_BIN/pg_isready" -q -h 127.0.0.1 -p "$POSTGRES_PORT"; }
pg_sql() { runuser -u postgres -- "$PG_BIN/psql" -q -v ON_ERROR_STOP=1 -h "$DSTACK/postgres" -p "$POSTGRES_PORT" -d postgres "$@"; }
up_postgres() {
  local data=$DSTACK/postgres/data
  if ! running postgres; then
    if [[ ! -s $data/PG_VERSION ]]; then
      log "postgres: initialising $data"
      rm -rf "$data"
      runuser -u postgres -- "$PG_BIN/initdb" -D "$data" --auth-local=peer --auth-host=scram-sha-256 -U postgres --no-sync >"$DSTACK/postgres/initdb.log" 2>&1 ||
        { cat "$DSTACK/postgres/initdb.log" >&2; die "initdb failed"; }
    fi
    port_free postgres "$POSTGRES_PORT"
    runuser -u postgres -- "$PG_BIN/pg_ctl" -D "$data" -l "$DSTACK/postgres/postgres.log" -s \
      -o "-c listen_addresses=127.0.0.1 -p $POSTGRES_PORT -c unix_socket_directories=$DSTACK/postgres -c fsync=off -c max_connections=200" start ||
      { tail -20 "$DSTACK/postgres/postgres.log" >&2; die "postgres did not start"; }
  fi
  wait_for 30 postgres pg_ready || { tail -20 "$DSTACK/postgres/postgres.log" >&2; die "postgres did not answer"; }
  local pw; pw=$(cat "$STACK/postgres.password")
  pg_sql <<SQL
SELECT 'CREATE ROLE hpcbridge LOGIN' WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'hpcbridge')\gexec
ALTER ROLE hpcbridge CREATEDB PASSWORD '$pw';
SELECT 'CREATE DATABASE hpcbridge OWNER hpcbridge' WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = 'hpcbridge')\gexec
SQL
}

hub_health() { curl -sf -o /dev/null --max-time 2 "http://127.0.0.1:$HUB_PORT/hub/health"; }
start_hub() {  # the hub needs ~5 s: start it first, wait for it last
  running hub && return 0
  port_free hub "$HUB_PORT"; port_free "hub (internal)" "$HUB_API_PORT"
  (
    cd "$STACK/hub"
    setsid "$VENV/bin/jupyterhub" -f "$STACK/hub/jupyterhub_config.py" \
      </dev/null >>"$STACK/hub/jupyterhub.log" 2>&1 &
    echo $! >"$STACK/hub/jupyterhub.pid"
  )
  printf '%s\n' "${HPCBRIDGE_HUB_EXTRA_CONFIG:-}" >"$STACK/hub/extra_config.current"
}
up_hub() {
  start_hub
  wait_for 60 JupyterHub hub_health ||
    { tail -30 "$STACK/hub/jupyterhub.log" >&2; die "JupyterHub did not answer on :$HUB_PORT/hub/health"; }
}

write_stack_json() {
  local tokens; tokens=$(tr -d '\n' <"$STACK/hub/tokens.json")
  write_if_changed "$STACK/stack.json" 644 <<EOF || true
{
  "repo": "$REPO",
  "stack_dir": "$STACK",
  "redis_url": "redis://127.0.0.1:$REDIS_PORT/0",
  "ssh": {"host": "127.0.0.1", "port": $SSH_PORT, "user": "$SSH_USER", "key": "$STACK/ssh/id_ed25519", "known_hosts": "$STACK/ssh/known_hosts"},
  "hub": {"url": "http://127.0.0.1:$HUB_PORT", "api_url": "http://127.0.0.1:$HUB_PORT/hub/api", "service_name": "hpcbridge", "service_url": "http://127.0.0.1:$SERVICE_PORT", "tokens": $tokens},
  "chromium": "$CHROMIUM",
  "slurm": {"partition": "$SLURM_PARTITION", "cpus": $SLURM_CPUS, "node": "$NODE_NAME", "cluster": "$SLURM_CLUSTER", "conf": "/etc/slurm/slurm.conf"},
  "mariadb": {"host": "127.0.0.1", "port": $MARIADB_PORT},
  "postgres": {"host": "127.0.0.1", "port": $POSTGRES_PORT, "user": "hpcbridge", "database": "hpcbridge", "password_file": "$STACK/postgres.password"},
  "prometheus": {"url": "http://127.0.0.1:$PROM_PORT", "targets_dir": "$PROM_DIR/targets", "token_file": "$PROM_DIR/metrics.token"}
}
EOF
}

# ---------------------------------------------------------------- main
gen_configs
# a config that changed under a running daemon: restart that daemon
for c in "${RESTART[@]}"; do
  if wanted "$c" && pid=$(pid_of "$c"); then
    log "$c: config changed, restarting"
    stop_pid "$pid" 30
  fi
done

wanted hub && start_hub
for c in "${COMPONENTS[@]}"; do
  wanted "$c" || continue
  t0=$(date +%s%N)
  "up_$c"
  log "$(printf '%-10s ready in %4d ms' "$c" $(( ($(date +%s%N) - t0) / 1000000 )))"
done
if (( PROM_WANTED )); then
  t0=$(date +%s%N)
  up_prometheus
  log "$(printf '%-10s ready in %4d ms' prometheus $(( ($(date +%s%N) - t0) / 1000000 )))"
fi
write_stack_json
print_status
prom_status_line
echo "stack description: $STACK/stack.json"
