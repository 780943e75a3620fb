"""ConnectorPool through the real test stack (sshd at :2222, Slurm): bounded connections
and channels, commands we stop waiting for, the per-minute cap, sshd restarts, host and
client keys, and SFTP confined to the work root.

The sshd restart test kills only the stack's listener and the sessions of its own pool,
and always leaves sshd running. Fixtures: conftest.py; the Slurm side: test_slurm_handler.py.
"""
from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import socket
import subprocess
import threading
import time
import uuid
from pathlib import Path

import asyncssh
import pytest
from connector_helpers import (
    all_final,
    file_size,
    make_config,
    open_connections,
    port_open,
    status_round,
    wait_until,
)

from hpcbridge.connectors.errors import (
    AuthenticationFailed,
    CommandInterrupted,
    ConnectorError,
    HostKeyError,
    HPCUnavailable,
    PathOutsideWorkRoot,
)
from hpcbridge.connectors.pool import ConnectorPool
from hpcbridge.connectors.spec import JobSpec, job_name
from hpcbridge.connectors.state import RUNNING, SUBMITTED, SUCCEEDED, UNKNOWN

pytestmark = [pytest.mark.stack, pytest.mark.timeout(900)]


# --- connection accounting from outside the process ----------------------------------------
class SshSampler(threading.Thread):
    """Samples `ss` during a burst: which process owns each client connection to sshd."""

    def __init__(self, port):
        super().__init__(daemon=True)
        self.port = port
        self.owner: dict[int, int] = {}  # client port -> pid
        self.stop_event = threading.Event()

    def run(self):
        while not self.stop_event.is_set():
            self.sample()
            self.stop_event.wait(0.05)

    def sample(self):
        out = subprocess.run(
            ["ss", "-tnpH", "state", "established", f"( dport = :{self.port} )"],
            capture_output=True, text=True).stdout
        for line in out.splitlines():
            m = re.search(rf":(\d+)\s+\S+:{self.port}\s+users:\(\(\"[^\"]*\",pid=(\d+)", line)
            if m:
                self.owner[int(m.group(1))] = int(m.group(2))

    def stop(self):
        self.stop_event.set()
        self.join()
        self.sample()

    def ports_of(self, pid):
        return {port for port, owner in self.owner.items() if owner == pid}

    def foreign_ports(self, pid):
        return {port for port, owner in self.owner.items() if owner != pid}


def sshd_log(ssh) -> Path:
    return ssh.stack_dir / "ssh" / "sshd.log"


def accepted_ports(text: str) -> list[int]:
    return [int(p) for p in re.findall(r"Accepted publickey for \S+ from \S+ port (\d+)", text)]


# --- 1. a burst of 200 submissions through one pool ----------------------------------------
@pytest.mark.slow
async def test_200_concurrent_submits_then_batched_status(ssh, pool, handler):
    size = pool.config.connections
    log = sshd_log(ssh)
    log_offset = log.stat().st_size
    sampler = SshSampler(ssh.port)
    sampler.start()
    try:
        root = await pool.resolve_work_root()
        specs = [JobSpec(name=job_name(f"burst-{uuid.uuid4().hex}"), workdir=f"{root}/b{i}",
                         command="true", time_minutes=2) for i in range(200)]
        started = time.monotonic()
        results = await asyncio.wait_for(
            asyncio.gather(*(handler.submit(s) for s in specs), return_exceptions=True), 300)
        burst_seconds = time.monotonic() - started
        ids = [r for r in results if isinstance(r, str)]
        pool.tracked.extend(ids)
    finally:
        sampler.stop()
    errors = [r for r in results if not isinstance(r, str)]
    assert not errors, f"{len(errors)} submissions failed, e.g. {errors[:3]!r}"
    assert len(set(ids)) == 200 and all(i.isdigit() for i in ids)
    assert pool.commands.counts["sbatch"] == 200
    # our side: never more connections than the pool has (a reopen after an "open failed"
    # channel would show here as well)
    assert 1 <= pool.connections_opened <= size
    assert open_connections(pool) <= size
    # the kernel's side: the client sockets this process held to sshd during the burst
    ours = sampler.ports_of(os.getpid())
    assert 1 <= len(ours) <= size, ours
    # sshd's side: logins accepted during the burst, minus other processes' (other tests
    # may share the stack)
    with open(log, errors="replace") as f:
        f.seek(log_offset)
        new_log = f.read()
    logins = [p for p in accepted_ports(new_log) if p not in sampler.foreign_ports(os.getpid())]
    assert 1 <= len(logins) <= size, (logins, new_log[-2000:])
    assert set(logins) <= ours
    print(f"200 submits in {burst_seconds:.1f}s over {len(logins)} sshd logins, "
          f"{pool.channel_refusals} channel refusals absorbed")

    # --- status_many of the 200: one squeue (+ at most one sacct) per call, until all ended
    states, seen = await wait_until(handler, ids, all_final, deadline=240)
    assert {s.status for s in states.values()} == {SUCCEEDED}
    assert all(s.exit_code == 0 for s in states.values())
    # nothing ever went back from an end
    for history in seen.values():
        assert all(st in (SUBMITTED, RUNNING, UNKNOWN) for st in history[:-1]), history
    # asking again about ended jobs is still one squeue + one sacct
    await status_round(handler, ids)
    assert pool.connections_opened <= size


# --- 2. commands we stop waiting for -------------------------------------------------------
def _remote_pids(pattern: str) -> list[int]:
    out = subprocess.run(["pgrep", "-u", "hpcuser", "-f", pattern], capture_output=True,
                         text=True).stdout
    return [int(p) for p in out.split()]


def _remote_count(pattern: str) -> int:
    return len(_remote_pids(pattern))


async def test_timed_out_and_cancelled_commands_free_their_channel(ssh):
    # one connection: its 10 sshd sessions are the whole budget. 4 channels: sshd frees the
    # sessions of finished commands a moment late, so 8 at once can see a refusal (absorbed by
    # retry, counted in channel_refusals) even with nothing leaked; 4 never does, while
    # leaked sessions of the timed-out commands would still be refused
    p = ConnectorPool(make_config(ssh, connections=1, channels_per_connection=4,
                                  command_timeout=60))
    tag = f"{time.time_ns() % 10**9:09d}"  # unique sleep argument to find the processes
    try:
        for _ in range(12):  # more than sshd's MaxSessions
            with pytest.raises(CommandInterrupted, match="timed out after 0.3 s"):
                await p.run(["sleep", f"300.{tag}"], timeout=0.3)
        for _ in range(12):
            with pytest.raises(asyncio.TimeoutError):
                await asyncio.wait_for(p.run(["sleep", f"301.{tag}"]), 0.3)
        # the remote commands were stopped, not left behind
        for _ in range(50):
            if _remote_count(f"sleep 30[01].{tag}") == 0:
                break
            await asyncio.sleep(0.1)
        assert _remote_count(f"sleep 30[01].{tag}") == 0
        # and once sshd has reaped those sessions (it does so a moment after the processes
        # end), the connection has room for a full set of channels again
        await asyncio.sleep(1.0)
        out = await asyncio.wait_for(asyncio.gather(
            *(p.run(["echo", str(i)]) for i in range(16))), 30)
        assert [r.stdout for r in out] == [f"{i}\n" for i in range(16)]
        assert p.channel_refusals == 0
        assert p.connections_opened == 1
    finally:
        await p.close()
        for pid in _remote_pids(f"sleep 30[01].{tag}"):  # only if the test failed
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)


async def test_commands_stay_under_the_per_minute_cap(ssh):
    # 120/min: bursts of up to 10 s worth (20 commands), then 2 per second
    p = ConnectorPool(make_config(ssh, commands_per_minute=120))
    stamps = []
    p.commands.hooks.append(lambda argv: stamps.append(time.monotonic()))
    try:
        started = time.monotonic()
        results = await asyncio.wait_for(
            asyncio.gather(*(p.run(["true"]) for _ in range(26))), 30)
        took = time.monotonic() - started
        assert all(r.exit_status == 0 for r in results)
        assert 2.5 <= took < 8, took
        assert sum(1 for t in stamps if t - started < 1.0) <= 21
    finally:
        await p.close()


# --- 3. sshd restarted in the middle of a burst --------------------------------------------
SSHD = "/usr/sbin/sshd"


def _sshd_pid(ssh) -> int | None:
    try:
        pid = int((ssh.stack_dir / "ssh" / "sshd.pid").read_text().strip())
    except (FileNotFoundError, ValueError):
        return None
    return pid if _alive(pid) else None


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/status") as f:
            return not any(line.startswith("State:") and line.split()[1] in "ZX" for line in f)
    except FileNotFoundError:
        return False


def _start_sshd(ssh):
    """The command line stack/up.sh uses (up_sshd)."""
    os.makedirs("/run/sshd", exist_ok=True)
    subprocess.run([SSHD, "-f", str(ssh.stack_dir / "ssh" / "sshd_config"),
                    "-E", str(ssh.stack_dir / "ssh" / "sshd.log")], check=True, timeout=10)
    end = time.monotonic() + 10
    while not port_open(ssh):
        assert time.monotonic() < end, "sshd did not come back"
        time.sleep(0.05)


def _session_pids(ssh, client_ports: set[int]) -> set[int]:
    """sshd processes serving the given client ports (our own pool's sessions)."""
    out = subprocess.run(["ss", "-tnpH", "state", "established", f"( sport = :{ssh.port} )"],
                         capture_output=True, text=True).stdout
    pids = set()
    for line in out.splitlines():
        fields = line.split()
        if len(fields) >= 4 and int(fields[3].rsplit(":", 1)[1]) in client_ports:
            pids |= {int(p) for p in re.findall(r"pid=(\d+)", line)}
    return pids


def restart_sshd(ssh, pool, down_seconds=0.0):
    """Stop the listener and kill our pool's sessions (as a restart of the login node
    would), then start sshd again with up.sh's command line."""
    pid = _sshd_pid(ssh)
    assert pid, "sshd of the stack is not running"
    ports = {c.get_extra_info("sockname")[1] for c in pool._conns
             if c is not None and not c.is_closed()}
    sessions = _session_pids(ssh, ports)
    os.kill(pid, signal.SIGTERM)
    for p in sessions:
        os.kill(p, signal.SIGKILL)
    end = time.monotonic() + 10
    while port_open(ssh):
        assert time.monotonic() < end, "sshd did not stop"
        time.sleep(0.02)
    time.sleep(down_seconds)
    _start_sshd(ssh)
    return sessions


@pytest.fixture
def sshd_guard(ssh):
    """Whatever happens in the test, sshd runs afterwards."""
    yield
    if _sshd_pid(ssh) is None or not port_open(ssh):
        _start_sshd(ssh)


async def run_echo(pool, i, delay=0.1):
    result = await pool.run(["sh", "-c", f"sleep {delay}; echo \"$1\"", "sh", f"n{i}"])
    return result.check().stdout


@pytest.mark.slow
@pytest.mark.parametrize("down_seconds", [0.0, 6.0])
async def test_sshd_restart_during_a_burst(ssh, pool, sshd_guard, down_seconds):
    assert (await run_echo(pool, 0, 0)) == "n0\n"

    async def burst():
        return await asyncio.gather(
            *(asyncio.wait_for(run_echo(pool, i), 60) for i in range(150)),
            return_exceptions=True)

    task = asyncio.create_task(burst())
    await asyncio.sleep(0.4)
    opened_before = pool.connections_opened
    assert opened_before == pool.config.connections  # the burst uses both connections
    killed = await asyncio.to_thread(restart_sshd, ssh, pool, down_seconds)
    assert killed, "found no session of the pool to kill"
    results = await asyncio.wait_for(task, 120)

    hung = [r for r in results if isinstance(r, asyncio.TimeoutError)]
    assert not hung, f"{len(hung)} commands hung"
    other = [r for r in results if isinstance(r, BaseException)
             and not isinstance(r, ConnectorError)]
    assert not other, f"untyped errors: {other[:3]!r}"
    interrupted = [r for r in results if isinstance(r, CommandInterrupted)]
    unavailable = [r for r in results if isinstance(r, HPCUnavailable)]
    ok = [(i, r) for i, r in enumerate(results) if isinstance(r, str)]
    assert interrupted, "the restart did not cut any running command"
    assert all(r == f"n{i}\n" for i, r in ok)
    print(f"down {down_seconds}s: {len(ok)} ok, {len(interrupted)} interrupted, "
          f"{len(unavailable) - len(interrupted)} unavailable")

    # after the restart: everything works again, through the same bounded pool
    after = await asyncio.wait_for(
        asyncio.gather(*(run_echo(pool, i, 0) for i in range(40))), 60)
    assert after == [f"n{i}\n" for i in range(40)]
    size = pool.config.connections
    assert pool.connections_opened - opened_before <= size
    assert open_connections(pool) <= size
    # no slot was lost on the way
    assert pool._slots.qsize() == size * pool.config.channels_per_connection
    assert _sshd_pid(ssh) is not None


# --- 4. host keys and client keys ----------------------------------------------------------
def _other_host_key_line(ssh) -> str:
    key = asyncssh.generate_private_key("ssh-ed25519").export_public_key().decode().strip()
    return f"[{ssh.host}]:{ssh.port} {key}\n"


async def test_changed_host_key_is_refused(ssh, tmp_path):
    known = tmp_path / "known_hosts"
    known.write_text(_other_host_key_line(ssh))
    p = ConnectorPool(make_config(ssh, known_hosts=str(known)))
    started = time.monotonic()
    try:
        with pytest.raises(HostKeyError) as info:
            await asyncio.wait_for(p.run(["true"]), 30)
        assert ssh.host in str(info.value) and str(ssh.port) in str(info.value)
        assert time.monotonic() - started < 5, "a host key mismatch must not be retried"
        assert p.connections_opened == 0
        # the pool keeps refusing; it never falls back to trusting the server
        with pytest.raises(HostKeyError):
            await asyncio.wait_for(p.run(["true"]), 30)
    finally:
        await p.close()


@pytest.mark.parametrize("known_hosts", ["empty", None])
async def test_unknown_host_key_is_refused(ssh, tmp_path, known_hosts):
    if known_hosts == "empty":
        (tmp_path / "kh").write_text("")
        known_hosts = str(tmp_path / "kh")
    p = ConnectorPool(make_config(ssh, known_hosts=known_hosts))
    try:
        with pytest.raises(HostKeyError) as info:
            await asyncio.wait_for(p.run(["true"]), 30)
        assert ssh.host in str(info.value)
    finally:
        await p.close()


async def test_unauthorized_key_fails_authentication(ssh, tmp_path):
    other = tmp_path / "other_key"
    asyncssh.generate_private_key("ssh-ed25519").write_private_key(str(other))
    p = ConnectorPool(make_config(ssh, key_file=str(other)))
    started = time.monotonic()
    try:
        with pytest.raises(AuthenticationFailed) as info:
            await asyncio.wait_for(p.run(["true"]), 30)
        message = str(info.value)
        assert str(other) in message and ssh.user in message
        assert time.monotonic() - started < 5, "a refused key must not be retried"
    finally:
        await p.close()


@pytest.mark.parametrize("kind", ["missing", "garbage", "directory"])
async def test_bad_key_file_fails_authentication_clearly(ssh, tmp_path, kind):
    path = tmp_path / "key"
    if kind == "garbage":
        path.write_text("this is not a key\n")
    elif kind == "directory":
        path.mkdir()
    p = ConnectorPool(make_config(ssh, key_file=str(path)))
    try:
        with pytest.raises(AuthenticationFailed) as info:
            await asyncio.wait_for(p.run(["true"]), 30)
        assert str(path) in str(info.value)
        assert p.connections_opened == 0
    finally:
        await p.close()


async def test_sshd_down_is_hpc_unavailable_fast_not_a_hang(ssh):
    # A port nobody listens on stands for a login node that is down. Many commands wait on
    # it at once (a poll round, log tails, stage-ins): they must all learn "unavailable"
    # within about one retry budget, not one budget each, one after the other.
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        free_port = s.getsockname()[1]
    p = ConnectorPool(make_config(ssh, port=free_port))  # default retry budget
    started = time.monotonic()
    try:
        results = await asyncio.wait_for(asyncio.gather(
            *(p.run(["true"]) for _ in range(60)), return_exceptions=True), 60)
        took = time.monotonic() - started
        assert all(isinstance(r, HPCUnavailable) for r in results), results[:3]
        assert "stack" in str(results[0]) and str(free_port) in str(results[0])
        assert took < 15, f"60 commands to a dead HPC took {took:.1f}s"
        assert p.connections_opened == 0
    finally:
        await p.close()


# --- 5. SFTP -------------------------------------------------------------------------------
def make_tree(root: Path) -> dict[str, bytes]:
    files = {
        "a.txt": b"alpha\n",
        "empty.dat": b"",
        ".hidden": b"secret-ish\n",
        "with space & ünïcode.txt": "ü\n".encode(),
        "sub/b.bin": bytes(range(256)) * 300,
        "sub/deeper/c.csv": b"x,y\n1,2\n",
    }
    for rel, data in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
    (root / "empty-dir").mkdir()
    return files


def snapshot(root: Path):
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for d in dirnames:
            out[os.path.relpath(os.path.join(dirpath, d), root) + "/"] = None
        for f in filenames:
            p = os.path.join(dirpath, f)
            out[os.path.relpath(p, root)] = Path(p).read_bytes()
    return out


async def test_sftp_round_trip(pool, tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    files = make_tree(src)
    await pool.upload(str(src), "job1/in")
    entries = {e.path: (e.size, e.is_dir) for e in await pool.listdir("job1/in")}
    assert entries == {**{rel: (len(data), False) for rel, data in files.items()},
                       "sub": (0, True), "sub/deeper": (0, True), "empty-dir": (0, True)}

    back = tmp_path / "back"
    await pool.download("job1/in", str(back))
    assert snapshot(back) == snapshot(src)

    # single files both ways
    await pool.upload(str(src / "a.txt"), "job1/single/a-copy.txt")
    await pool.download("job1/single/a-copy.txt", str(tmp_path / "one" / "a.txt"))
    assert (tmp_path / "one" / "a.txt").read_bytes() == files["a.txt"]

    assert await file_size(pool, "job1/in/sub/b.bin") == 256 * 300
    assert await file_size(pool, "job1/in/missing") is None
    assert await pool.read_range("job1/in/sub/b.bin", 1000, 10) == files["sub/b.bin"][1000:1010]
    assert await pool.read_range("job1/in/a.txt", 2, 1000) == b"pha\n"
    assert await pool.read_range("job1/in/a.txt", 6, 10) == b""  # nothing new
    assert await pool.read_range("job1/in/nope.log", 0, 10) == b""
    # log tails of many jobs: one SFTP channel
    before = pool.commands.counts["sftp"]
    got = await pool.read_ranges([("job1/in/a.txt", 0, 5), ("job1/in/sub/deeper/c.csv", 4, 4),
                                  ("job1/in/none", 0, 5)])
    assert got == [b"alpha", b"1,2\n", b""]
    assert pool.commands.counts["sftp"] - before == 1

    await pool.write_bytes("job1/script.sh", b"#!/bin/sh\necho hi\n", 0o700)
    out = await pool.run(["sh", "-c", 'stat -c %a "$1" && "$1"', "sh",
                          f"{pool.work_root}/job1/script.sh"])
    assert out.check().stdout == "700\nhi\n"

    # a missing file is an error of its own, not a lost connection (which would close it
    # under every other command it carries)
    opened = pool.connections_opened
    with pytest.raises(FileNotFoundError):
        await pool.upload(str(tmp_path / "no-such-local"), "job1/x")
    with pytest.raises(FileNotFoundError):
        await pool.download("job1/none", str(tmp_path / "none"))
    with pytest.raises(FileNotFoundError):
        await pool.listdir("job1/none")
    assert pool.connections_opened == opened
    assert open_connections(pool) >= 1

    await pool.rmtree("job1")
    assert await file_size(pool, "job1") is None
    assert await pool.listdir(".") == []
    await pool.rmtree("job1")  # removing what is gone is fine


async def test_sftp_refuses_paths_outside_the_work_root(pool, tmp_path):
    root = await pool.resolve_work_root()
    assert "/hpcbridge-tests/" in root and root.startswith("/")
    (tmp_path / "f").write_text("x")
    home = root.split("/hpcbridge-tests/")[0]
    for bad in ["../x", "..", "a/../../x", "/etc/passwd", f"{home}/.ssh/authorized_keys",
                f"{root}-sibling/x", "/tmp"]:
        with pytest.raises(PathOutsideWorkRoot):
            await pool.write_bytes(bad, b"evil")
        with pytest.raises(PathOutsideWorkRoot):
            await pool.read_range(bad, 0, 10)
        with pytest.raises(PathOutsideWorkRoot):
            await pool.upload(str(tmp_path / "f"), bad)
        with pytest.raises(PathOutsideWorkRoot):
            await pool.download(bad, str(tmp_path / "d"))
        with pytest.raises(PathOutsideWorkRoot):
            await pool.listdir(bad)
        with pytest.raises(PathOutsideWorkRoot):
            await pool.rmtree(bad)
        with pytest.raises(PathOutsideWorkRoot):
            await pool.makedirs(bad)
    with pytest.raises(ValueError):
        await pool.rmtree(".")
    # nothing was written where it must not be
    ak = await pool.run(["cat", f"{home}/.ssh/authorized_keys"])
    assert "evil" not in ak.stdout
    assert not os.path.exists(tmp_path / "d")
