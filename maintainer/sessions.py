"""Interactive sessions on the HPC (issue #22): start, watch, stop, charge time.
The poller calls watch_sessions once per cycle of each HPC it holds.

starting: the app is staged and sbatch'ed (submit_attempted_at first: after a crash the job
is found by name); once the job runs, the service's session file (node and port, written
by the batch script when the service listens) is read over SFTP and a forwarded connection
to it is opened → running. Any failure on the way, the job's end, no start within
SessionSettings.queue_timeout or no listening service start_timeout after the job started
→ stopped with the reason, the job cancelled. A stop
request, the idle timeout or the job's end (its time limit) → stopped. Time is charged
from when the job started, every charge_period and at the stop (server/storesessions.py).
"""
from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import logging
import re
import shlex
from dataclasses import dataclass

from hpcbridge.clock import aware, utcnow
from hpcbridge.connectors.errors import (
    ConnectorError,
    HPCUnavailable,
    RemoteFileNotFound,
    RemoteTimeout,
)
from hpcbridge.connectors.layout import WorkDir
from hpcbridge.connectors.spec import JobSpec
from hpcbridge.connectors.state import CANCELLED, FAILED, RUNNING, SUCCEEDED
from hpcbridge.manifest import ManifestError, parse_manifest
from hpcbridge.sessionconfig import SessionSettings

from .jobspec import job_environment
from .staging import stage_in

log = logging.getLogger("hpcbridge.maintainer")
SESSION_FILE = "session.json"  # in the work dir: {"node": ..., "port": ...}
NODE = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9.-]{0,251}[A-Za-z0-9])?")
ENDED = (SUCCEEDED, FAILED, CANCELLED)
STAGE_TIMEOUT_SECONDS = 300.0
# Whether the listener on a port is one of the service's own processes (Linux /proc): the
# port was free when picked, but another session's service on the same node may take it
# first, and that one must never be taken for this session's.
OWNS_PORT = """\
import os, sys
port, root = int(sys.argv[1]), sys.argv[2]
inodes = set()
for table in ("/proc/net/tcp", "/proc/net/tcp6"):
    try:
        for row in open(table).readlines()[1:]:
            f = row.split()
            if f[3] == "0A" and int(f[1].rsplit(":", 1)[1], 16) == port:
                inodes.add("socket:[%s]" % f[9])
    except OSError:
        pass
children = dict()
for pid in filter(str.isdigit, os.listdir("/proc")):
    try:
        ppid = open("/proc/%s/stat" % pid).read().rsplit(")", 1)[1].split()[1]
    except (OSError, IndexError):
        continue
    children.setdefault(ppid, []).append(pid)
tree, todo = set(), [root]
while todo:
    pid = todo.pop()
    tree.add(pid)
    todo.extend(children.get(pid, []))
for pid in tree:
    try:
        fds = os.listdir("/proc/%s/fd" % pid)
    except OSError:
        continue
    for fd in fds:
        try:
            if os.readlink("/proc/%s/fd/%s" % (pid, fd)) in inodes:
                sys.exit(0)
        except OSError:
            pass
sys.exit(1)
"""
# what the batch script runs around the app's command: a free port for it, then, once the
# service itself listens on it, the session file; on scancel (SIGTERM) the service is
# stopped with it, and at its time limit on any scheduler (`timeout`: the local one has no
# limit of its own)
WRAPPER = """\
HPCBRIDGE_SESSION_PORT="$(python3 -c 'import socket; s = socket.socket(); \
s.bind(("", 0)); print(s.getsockname()[1])')"
export HPCBRIDGE_SESSION_PORT
timeout {seconds} bash -c {command} &
service=$!
trap 'kill "$service" 2>/dev/null' TERM INT
node="$(hostname)"
for _ in $(seq 1 3600); do
  if python3 -c {owns_port} "$HPCBRIDGE_SESSION_PORT" "$service" 2>/dev/null; then
    printf '{{"node": "%s", "port": %s}}\\n' "$node" "$HPCBRIDGE_SESSION_PORT" \
      > {file}.tmp && mv {file}.tmp {file}
    break
  fi
  kill -0 "$service" 2>/dev/null || break
  sleep 1
done
wait "$service"
"""

# decisions
WAIT, SUBMIT, CHECK, CHARGE, STOP = "wait", "submit", "check", "charge", "stop"


@dataclass(frozen=True)
class Decision:
    action: str
    message: str = ""
    event: str = "stopped"
    cancel: bool = False  # the scheduler's job must be cancelled first


def session_job_name(session_id: str) -> str:
    return f"hpcbridge-session-{session_id}"


def _age(since: dt.datetime | None, now: dt.datetime) -> float:
    return (now - aware(since)).total_seconds() if since is not None else 0.0


def ended_message(state) -> str:
    word = (state.raw_state or "").split(" ")[0].upper()
    if word == "TIMEOUT":
        return "the session reached its time limit and was ended by the scheduler"
    if state.status == CANCELLED:
        return f"the session's job was cancelled on the HPC ({state.raw_state})"
    if state.status == SUCCEEDED:
        return "the session's service exited"
    return f"the session's job ended: {state.reason or state.raw_state}"


def decide(record, state, now: dt.datetime, conf) -> Decision:
    """What to do with one active session now (pure): `state` is the scheduler's JobState
    of its job (None when it has no job yet or the scheduler did not say)."""
    ended = state is not None and state.status in ENDED
    if record.stop_requested or record.status == "stopping":
        asked = record.message or ""
        message = asked.replace("stop requested by", "stopped by", 1) \
            if asked.startswith("stop requested by") else "stopped on request"
        return Decision(STOP, message, "stopped", cancel=not ended)
    if record.status == "starting":
        if ended:
            return Decision(STOP, "the service ended before it listened: "
                            + ended_message(state), "start_failed")
        started = record.charged_until  # when its job was first seen running
        if started is not None and _age(started, now) > conf.start_timeout:
            return Decision(STOP, f"its service did not listen within {conf.start_timeout:g} "
                            "s of the job's start", "start_failed", cancel=True)
        if started is None and _age(record.created_at, now) > conf.queue_timeout:
            return Decision(STOP, f"its job did not start on the HPC within "
                            f"{conf.queue_timeout:g} s (no room)", "start_failed", cancel=True)
        if record.scheduler_id is None:
            return Decision(SUBMIT)
        return Decision(CHECK) if state is not None and state.status == RUNNING \
            else Decision(WAIT)
    if ended:
        return Decision(STOP, ended_message(state), "ended")
    idle = _age(record.last_activity_at or record.running_at, now)
    if idle > conf.idle_timeout:
        return Decision(STOP, f"stopped after {idle:.0f} s without activity (idle timeout "
                        f"{conf.idle_timeout:g} s)", "idle", cancel=True)
    if record.charged_until is not None and \
            _age(record.charged_until, now) >= conf.charge_period:
        return Decision(CHARGE)
    return Decision(WAIT)


def parse_session_file(data: bytes) -> tuple[str, int]:
    """(node, port) from the service's session file; ValueError for anything else (its
    contents are the job's: untrusted)."""
    info = json.loads(data.decode())
    if not isinstance(info, dict):
        raise ValueError("not a JSON object")
    node, port = info.get("node"), info.get("port")
    if not isinstance(node, str) or not NODE.fullmatch(node):
        raise ValueError(f"invalid node name {str(node)[:80]!r}")
    if isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536:
        raise ValueError(f"invalid port {str(port)[:20]!r}")
    return node, port


def build_session_spec(record, app, workdir: WorkDir, hpc) -> JobSpec:
    """The JobSpec of a session's job; ManifestError when the app cannot be started."""
    if app is None:
        raise ManifestError(f"app {record.app} is no longer registered")
    manifest = parse_manifest(app.manifest)
    if manifest.kind != "service":
        raise ManifestError(f"app {record.app} is not a service app")
    env = job_environment(record.id, workdir, record.params or {}, False)
    env.update(HPCBRIDGE_SESSION_ID=record.id, HPCBRIDGE_BASE_URL=record.base_url or "/",
               HPCBRIDGE_SESSION_TOKEN=record.secret or "",
               HPCBRIDGE_SESSION_FILE=workdir.join(SESSION_FILE))
    file = shlex.quote(workdir.join(SESSION_FILE))
    resources = record.resources or {}
    minutes = max(1, int((record.time_limit_seconds or 600) // 60))
    try:
        return JobSpec(
            name=session_job_name(record.id), workdir=workdir.path,
            command=WRAPPER.format(command=shlex.quote(manifest.command()), file=file,
                                   seconds=minutes * 60, owns_port=shlex.quote(OWNS_PORT)),
            environment=env,
            partition=resources.get("partition") or hpc.default_partition,
            time_minutes=minutes,
            cpus=int(resources.get("cpus") or 1), memory_mb=resources.get("memory"),
            gpus=int(resources.get("gpus") or 0))
    except ValueError as exc:
        raise ManifestError(f"cannot build the session's job: {exc}") from exc


_settings: dict[int, SessionSettings] = {}


def settings_of(run) -> SessionSettings:
    site = run.site
    if id(site) not in _settings:
        _settings[id(site)] = SessionSettings(config=site.config)
    return _settings[id(site)]


def watch_sessions(run, hpc) -> None:
    """One round of the sessions of `hpc`: run is the poller's CycleRuntime (run.run(coro,
    timeout) on the io loop, run.store, run.handlers ...); raises nothing."""
    try:
        records = run.store.active_sessions(hpc.id)
        if not records:
            return
        conf = settings_of(run)
        handler = run.handlers[hpc.id]
        ids = [r.scheduler_id for r in records if r.scheduler_id]
        states = run.run(handler.status_many(ids)) if ids else {}
        for record in records:
            step(run, hpc, conf, record, states.get(record.scheduler_id))
    except HPCUnavailable as exc:  # the HPC's condition: every session waits for it
        log.warning("sessions of %s wait: %s", hpc.id, exc)
    except Exception:  # nothing escapes into the poller
        log.exception("watching the sessions of %s", hpc.id)


def step(run, hpc, conf, record, state) -> None:
    """Act on one session's decision; its own failures never stop the others'."""
    decision = decide(record, state, utcnow(), conf)
    log.debug("session %s (%s, job %s): %s", record.id, record.status,
              state.raw_state if state else None, decision)
    try:
        if state is not None and state.status == RUNNING and record.charged_until is None:
            run.store.start_charging(record.id, utcnow())  # its time counts from now on
        if decision.action == SUBMIT:
            submit(run, hpc, record)
        elif decision.action == CHECK:
            check_listening(run, hpc, conf, record)
        elif decision.action == CHARGE:
            run.store.charge_session(record.id)
        elif decision.action == STOP:
            stop(run, hpc, record, decision)
    except HPCUnavailable:
        raise  # the whole HPC waits (watch_sessions)
    except ConnectorError as exc:  # this session's command was refused: said (once per
        log.warning("session %s: %s", record.id, exc)  # reason), tried again next cycle
        if record.message != str(exc):
            run.store.add_session_event(record.id, "waiting", str(exc))
    except Exception:
        log.exception("session %s", record.id)


def stop(run, hpc, record, decision: Decision) -> None:
    handler = run.handlers[hpc.id]
    if decision.cancel and record.scheduler_id:
        run.run(handler.cancel(record.scheduler_id))
    elif decision.cancel and record.submit_attempted_at:
        run.run(handler.cancel_by_name(session_job_name(record.id)))
    if run.store.session_transition(record.id, "stopped", decision.message,
                                    event_type=decision.event, node=None, port=None):
        log.info("session %s stopped: %s", record.id, decision.message)


def submit(run, hpc, record) -> None:
    """Stage the app and sbatch the session's job (or find the one an earlier attempt
    made); a session that cannot be started ends stopped with the reason."""
    handler = run.handlers[hpc.id]
    name = session_job_name(record.id)
    try:
        if record.submit_attempted_at:
            found = run.run(handler.find_by_name(name))
            if found:
                run.store.update_session(record.id, scheduler_id=found)
                run.store.add_session_event(record.id, "submitted",
                                            f"found already submitted as {found}")
                return
        work_root = run.run(handler.transport.resolve_work_root())
        workdir = WorkDir.of(work_root, record.user, record.id)
        spec = build_session_spec(record, run.store.get_app(record.app), workdir, hpc)
        run.store.update_session(record.id, remote_dir=workdir.path, worker=run.worker_id)
        app_path = run.site.artifacts.path("apps", record.app)
        run.run(stage_in(handler.transport, record, app_path, None, workdir),
                timeout=STAGE_TIMEOUT_SECONDS)
        run.store.update_session(record.id, submit_attempted_at=utcnow())
        scheduler_id = run.run(handler.submit(spec))
    except HPCUnavailable:
        raise
    except (ManifestError, ConnectorError, ValueError, OSError) as exc:
        message = exc.message if isinstance(exc, ManifestError) else str(exc)
        return stop(run, hpc, run.store.get_session(record.id),
                    Decision(STOP, f"the session could not be started: {message}",
                             "start_failed", cancel=True))
    run.store.update_session(record.id, scheduler_id=scheduler_id)
    run.store.add_session_event(record.id, "submitted",
                                f"submitted to {hpc.id} as {scheduler_id}")


async def probe(transport, node: str, port: int, timeout: float) -> bool:
    """Does something accept connections at node:port (as the login node sees it)?"""
    try:
        if hasattr(transport, "open_tunnel"):
            tunnel = await transport.open_tunnel(node, port, timeout)
            tunnel.close()
        else:  # the local scheduler: this machine
            _, writer = await asyncio.wait_for(asyncio.open_connection(node, port), timeout)
            with contextlib.suppress(Exception):
                writer.close()
        return True
    except RemoteTimeout:
        return False
    except HPCUnavailable:
        raise
    except (ConnectorError, OSError, asyncio.TimeoutError):
        return False


def check_listening(run, hpc, conf, record) -> None:
    """Once the service wrote its session file and accepts a forwarded connection: running."""
    transport = run.handlers[hpc.id].transport
    path = WorkDir(record.remote_dir).join(SESSION_FILE)
    try:
        data = run.run(transport.read_range(path, 0, conf.max_port_file_bytes + 1))
    except RemoteFileNotFound:
        return  # not listening yet
    if not data:  # missing (the SFTP transport reads a missing file as empty): not yet
        return
    try:
        if len(data) > conf.max_port_file_bytes:
            raise ValueError(f"larger than {conf.max_port_file_bytes} bytes")
        node, port = parse_session_file(data)
    except ValueError as exc:
        return stop(run, hpc, record, Decision(
            STOP, f"the service wrote an invalid {SESSION_FILE}: {exc}", "start_failed",
            cancel=True))
    if not run.run(probe(transport, node, port, conf.proxy_connect_timeout)):
        return
    now = utcnow()
    if run.store.session_transition(record.id, "running", f"running on {node}:{port}",
                                    expect=["starting"], node=node, port=port,
                                    last_activity_at=now):
        log.info("session %s runs on %s:%d", record.id, node, port)
