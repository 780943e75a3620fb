"""Faults of the HPC and of a job's own files, through the real stack (sshd at :2222 as
hpcuser, Slurm): every one ends in a classified ConnectorError within its deadline, and one
bad file stops no other. docs/reliability.md describes each case."""
from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import time

import pytest
from connector_helpers import all_final, cleanup, make_config, submit, wait_until

from hpcbridge.connectors.errors import (
    HPCUnavailable,
    JobFileError,
    RemoteTimeout,
    SchedulerUnavailable,
)
from hpcbridge.connectors.handlers import SlurmHandler
from hpcbridge.connectors.pool import ConnectorPool

STACK = "/work/main"


async def swap_for_fifo(pool, path: str) -> None:
    await pool.run(["sh", "-c", 'rm -f -- "$1" && mkfifo -- "$1"', "sh", path])


@contextlib.asynccontextmanager
async def own_pool(ssh, **overrides):
    """A pool with its own settings, cleaned up like the `pool` fixture's."""
    p = ConnectorPool(make_config(ssh, **overrides))
    p.tracked = []
    try:
        yield p
    finally:
        await cleanup(p)


async def test_a_log_replaced_by_a_named_pipe_stops_no_other_read(pool, handler):
    root = await pool.resolve_work_root()
    a = await submit(handler, pool, "a", "echo out-a")
    b = await submit(handler, pool, "b", "echo out-b")
    await wait_until(handler, [a, b], all_final, 90)
    log_a, log_b = f"{root}/a/stdout.log", f"{root}/b/stdout.log"
    await swap_for_fifo(pool, log_a)
    start = time.monotonic()
    out = await asyncio.wait_for(pool.read_ranges([(log_a, 0, 100), (log_b, 0, 100)]), 20)
    assert time.monotonic() - start < 5
    assert isinstance(out[0], JobFileError) and "not a regular file" in str(out[0])
    assert out[0].path == log_a
    assert out[1] == b"out-b\n"
    with pytest.raises(JobFileError):  # stage-out refuses it the same way
        await asyncio.wait_for(pool.download(log_a, "/tmp/never-written"), 20)


async def test_a_folder_download_skips_what_is_not_a_regular_file(pool, tmp_path):
    root = await pool.resolve_work_root()
    await pool.write_bytes(f"{root}/job/result/data.txt", b"kept")
    await swap_for_fifo(pool, f"{root}/job/result/pipe")
    await pool.run(["ln", "-s", "/etc/passwd", f"{root}/job/result/link"])
    await asyncio.wait_for(pool.download(f"{root}/job", str(tmp_path / "job")), 20)
    assert (tmp_path / "job/result/data.txt").read_bytes() == b"kept"
    assert sorted(os.listdir(tmp_path / "job/result")) == ["data.txt"]


async def test_an_unreadable_log_is_the_jobs_error_not_a_hang(pool):
    root = await pool.resolve_work_root()
    await pool.write_bytes(f"{root}/c/stdout.log", b"secret", mode=0)
    await pool.write_bytes(f"{root}/d/stdout.log", b"fine")
    out = await asyncio.wait_for(pool.read_ranges(
        [(f"{root}/c/stdout.log", 0, 10), (f"{root}/d/stdout.log", 0, 10)]), 20)
    assert isinstance(out[0], JobFileError) and "permission denied" in str(out[0])
    assert out[1] == b"fine"
    with pytest.raises(JobFileError, match="permission denied"):
        await pool.download(f"{root}/c/stdout.log", "/tmp/never-written")


async def test_an_sftp_call_that_hangs_is_abandoned_and_the_pool_recovers(ssh):
    async with own_pool(ssh, sftp_timeout=1, connections=1) as p:
        root = await p.resolve_work_root()
        fifo = f"{root}/blocking"
        await swap_for_fifo(p, fifo)
        start = time.monotonic()
        with pytest.raises(RemoteTimeout, match="no answer in 1 s"):
            async with p.sftp() as sftp:  # a log swapped for a pipe after its lstat:
                await p._open_for_read(sftp, fifo)  # the server's open waits for a writer
        assert time.monotonic() - start < 5
        await asyncio.sleep(0.5)
        assert not blocked_on_a_pipe(), "the server-side open still waits for a writer"
        await p.write_bytes(f"{root}/after.txt", b"clean")  # a fresh channel
        assert await p.read_range(f"{root}/after.txt", 0, 10) == b"clean"
        assert (await p.run(["true"])).exit_status == 0


def blocked_on_a_pipe() -> list[str]:
    """hpcuser's processes waiting in open(2) for the other end of a named pipe."""
    ps = subprocess.run(["ps", "-u", "hpcuser", "-o", "pid=,wchan:30=,args="],
                        capture_output=True, text=True).stdout
    return [line for line in ps.splitlines() if "wait_for_partner" in line]


async def test_the_wait_for_a_free_channel_has_a_deadline(ssh):
    async with own_pool(ssh, connections=1, channels_per_connection=1,
                        command_timeout=1) as p:
        await p.resolve_work_root()
        async with p.sftp():  # the only channel, held
            start = time.monotonic()
            with pytest.raises(RemoteTimeout, match="no free channel"):
                await p.run(["true"])
            assert time.monotonic() - start < 3
        assert (await p.run(["true"])).exit_status == 0


async def test_a_silent_server_costs_one_connect_deadline():
    async def silent(reader, writer):
        await asyncio.sleep(30)  # accepts, never speaks SSH
    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    p = ConnectorPool(make_config(
        type("S", (), dict(host="127.0.0.1", port=port, user="x", key=None,
                           known_hosts=None))(),
        connect_timeout=0.5, connect_retries=1))
    try:
        start = time.monotonic()
        with pytest.raises(HPCUnavailable, match="cannot reach"):
            await p.run(["true"])
        assert time.monotonic() - start < 3
    finally:
        await p.close()
        server.close()


async def test_a_failed_lookup_by_name_is_unknown_not_absent(pool):
    # a real squeue that exits non-zero (an unknown cluster): not "never submitted"
    bad = SlurmHandler(pool.config.model_copy(
        update={"squeue_command": ["squeue", "--clusters=nosuch"]}), pool)
    with pytest.raises(SchedulerUnavailable, match="the answer is unknown"):
        await bad.find_by_name("hpcbridge-never")


@pytest.mark.faults
async def test_sbatch_without_a_controller_waits_instead_of_failing(pool, handler):
    """Stops the shared slurmctld for a few seconds: run with `-m faults` only."""
    pid_file = f"{STACK}/.stack/slurm/slurmctld.pid"
    with open(pid_file) as f:
        pid = int(f.read())
    os.kill(pid, 15)
    try:
        for _ in range(50):  # until it is gone
            if not os.path.exists(f"/proc/{pid}"):
                break
            await asyncio.sleep(0.1)
        start = time.monotonic()  # sbatch itself tries for ~10 s before it gives up
        with pytest.raises(SchedulerUnavailable, match="does not answer") as info:
            await submit(handler, pool, "down", "true")
        took = time.monotonic() - start
        assert "Unable to contact slurm controller" in str(info.value), info.value
        assert took < 25, took
    finally:
        subprocess.run(["bash", f"{STACK}/stack/up.sh", "slurmctld"], check=True,
                       timeout=40, capture_output=True)
