"""LocalHandler: jobs as detached local processes (the embedded default), real not mocked.

The shared behaviour (submit/status/cancel/exit codes/quoting) is in
tests/integration/connectors/test_handler_contract.py; these are the local handler's own
details.
"""
import asyncio
import os
import subprocess
import time

import pytest

from hpcbridge.connectors.errors import PathOutsideWorkRoot, SchedulerError
from hpcbridge.connectors.handlers import create_handler
from hpcbridge.connectors.spec import JobSpec, job_name
from hpcbridge.connectors.state import CANCELLED, FAILED, RUNNING, SUCCEEDED, UNKNOWN
from hpcbridge.connectors.transport import LocalTransport
from hpcbridge.lifecycle import FINAL


@pytest.fixture
def handler(tmp_path):
    h = create_handler({"id": "local", "scheduler": "local", "work_root": str(tmp_path / "root")})
    yield h


def spec_for(handler, tag, command, **kw):
    workdir = os.path.join(handler.transport.work_root, tag)
    return JobSpec(name=job_name(tag), workdir=workdir, command=command, **kw)


async def wait_final(handler, ids, deadline=30.0):
    end = time.monotonic() + deadline
    while True:
        states = await handler.status_many(ids)
        if all(s.status in FINAL for s in states.values()) or time.monotonic() > end:
            return states
        await asyncio.sleep(0.1)


async def test_job_runs_and_reports_output_and_elapsed(handler):
    await handler.transport.resolve_work_root()
    job = await handler.submit(spec_for(handler, "t1", "sleep 1; echo done"))
    state = (await handler.status_many([job]))[job]
    assert state.status == RUNNING
    final = (await wait_final(handler, [job]))[job]
    assert final.status == SUCCEEDED and final.exit_code == 0
    assert final.elapsed_seconds is not None and 1 <= final.elapsed_seconds <= 5
    out = await handler.transport.read_range("t1/stdout.log", 0, 100)
    assert out == b"done\n"


async def test_concurrent_submits_get_distinct_ids(handler):
    specs = [spec_for(handler, f"c{i}", f"exit {i % 4}") for i in range(40)]
    ids = await asyncio.gather(*(handler.submit(s) for s in specs))
    assert len(set(ids)) == 40
    states = await wait_final(handler, ids)
    for i, job in enumerate(ids):
        assert states[job].exit_code == i % 4, (i, states[job])
    for i in range(40):
        assert await handler.find_by_name(job_name(f"c{i}")) == ids[i]


async def test_cancel_kills_the_whole_process_tree(handler, tmp_path):
    marker = tmp_path / "root" / "t2" / "child.pid"
    job = await handler.submit(spec_for(handler, "t2", f"sleep 300 & echo $! > {marker}; wait"))
    for _ in range(100):
        if marker.exists() and marker.read_text().strip():
            break
        await asyncio.sleep(0.05)
    child = int(marker.read_text())
    assert _alive(child)
    await handler.cancel(job)
    for _ in range(100):
        if not _alive(child):
            break
        await asyncio.sleep(0.05)
    assert not _alive(child), "cancel left the job's child process running"
    assert (await handler.status_many([job]))[job].status == CANCELLED
    await handler.cancel(job)  # cancelling twice is harmless
    assert (await handler.status_many([job]))[job].status == CANCELLED


async def test_cancel_after_the_end_does_not_rewrite_history(handler):
    job = await handler.submit(spec_for(handler, "t3", "true"))
    assert (await wait_final(handler, [job]))[job].status == SUCCEEDED
    await handler.cancel(job)
    assert (await handler.status_many([job]))[job].status == SUCCEEDED


async def test_timeout_and_vanished_process_are_failures_with_reasons(handler):
    # Drive the state files as the wrapper would leave them (the real 1-minute timeout is
    # covered for Slurm; `timeout` exits 124 when the limit hits).
    await handler.transport.resolve_work_root()
    state_root = os.path.join(handler.transport.work_root, ".hpcbridge-local")
    for job, files in {"100": {"started": "1", "finished": "61", "exit_code": "124"},
                       "101": {"started": "1"}}.items():
        os.makedirs(os.path.join(state_root, job))
        for name, text in files.items():
            with open(os.path.join(state_root, job, name), "w") as f:
                f.write(text)
    dead = subprocess.Popen(["true"])
    dead.wait()
    with open(os.path.join(state_root, "101", "pid"), "w") as f:
        f.write(str(dead.pid))
    states = await handler.status_many(["100", "101"])
    assert states["100"].status == FAILED and states["100"].reason.startswith("TIMEOUT")
    assert states["100"].elapsed_seconds == 60
    assert states["101"].status == FAILED and states["101"].reason.startswith("NODE_FAIL")


async def test_unknown_and_bad_ids(handler):
    assert (await handler.status_many(["424242"]))["424242"].status == UNKNOWN
    assert await handler.find_by_name("hpcbridge-nobody") is None
    with pytest.raises(SchedulerError):
        await handler.status_many(["../../etc"])
    with pytest.raises(SchedulerError):
        await handler.cancel("1; rm -rf /")


async def test_the_batch_prelude_runs_before_the_command(tmp_path):
    handler = create_handler({"id": "local", "scheduler": "local",
                              "work_root": str(tmp_path / "root"),
                              "batch_prelude": ["#SBATCH --comment=x", "export GREETING=hi"]})
    job = await handler.submit(spec_for(handler, "p1", 'echo "$GREETING from the job"'))
    assert (await wait_final(handler, [job]))[job].status == SUCCEEDED
    assert await handler.transport.read_range("p1/stdout.log", 0, 100) == b"hi from the job\n"


async def test_local_transport_files(tmp_path):
    t = LocalTransport(str(tmp_path / "root"))
    root = await t.resolve_work_root()
    await t.write_bytes("a/b/c.txt", b"0123456789", 0o600)
    assert os.path.getsize(os.path.join(root, "a/b/c.txt")) == 10
    assert await t.read_range("a/b/c.txt", 4, 3) == b"456"
    assert await t.read_range("a/b/c.txt", 50, 3) == b""
    assert await t.read_range("nope", 0, 3) == b""
    assert [(e.path, e.size, e.is_dir) for e in await t.listdir("a")] == [
        ("b", 0, True), ("b/c.txt", 10, False)]
    for bad in ["../x", "/etc/passwd", "a/../../x"]:
        with pytest.raises(PathOutsideWorkRoot):
            await t.write_bytes(bad, b"x")
        with pytest.raises(PathOutsideWorkRoot):
            await t.read_range(bad, 0, 1)
    await t.rmtree("a")
    assert os.listdir(root) == []
    result = await t.run(["sh", "-c", 'printf %s "$1"; exit 3', "sh", "$(id) ; `x`"])
    assert (result.exit_status, result.stdout) == (3, "$(id) ; `x`")


def _alive(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            return not any(line.startswith("State:") and "Z" in line for line in f)
    except FileNotFoundError:
        return False
