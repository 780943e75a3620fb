"""Results are never lost (maintainer/tasks.py finishing, staging.py stage_out) and a bad
log stops nothing (logs.py), on a real store and the local handler: a result store that
cannot be written keeps the job `finishing` and the HPC copy in place until it can; a
copy that does not match the listing is never swapped in (nor kept as the job's results); a result the job made
unreadable ends it with a clear message and keeps the remote copy."""
from __future__ import annotations

import os
import threading
import time

import pytest
from maintainer_helpers import add_app, events, new_job, site_config

from hpcbridge.config import Site
from hpcbridge.connectors.errors import JobFileError
from hpcbridge.maintainer.logs import UNREADABLE_EVENT, tail_logs
from hpcbridge.maintainer.poller import Poller
from hpcbridge.maintainer.runtime import Runtime
from hpcbridge.maintainer.tasks import drive

RESULTS = {"name": "hello", "supported_hpc": ["local"],
           "execution_stage": "echo out; echo 12345 > result/a.txt; mkdir result/sub; "
                              "echo x > result/sub/b.txt"}


@pytest.fixture
def rt(tmp_path):
    """A Runtime whose HPC removes the work dir after every end (cleanup: always)."""
    c = site_config(tmp_path)
    c.Site.hpcs = [{**c.Site.hpcs[0], "cleanup": "always"}]
    runtime = Runtime(Site(config=c), worker_id="test-worker")
    yield runtime
    runtime.close()


def finishing(rt, tmp_path):
    add_app(rt.store, tmp_path, RESULTS)
    job = new_job(rt.store)
    assert drive(rt, job.id) == "submitted"
    poller, hpc = Poller(rt, threading.Event()), rt.hpcs["local"]
    deadline = time.monotonic() + 20
    while rt.store.get_job(job.id).status != "finishing":
        assert time.monotonic() < deadline, rt.store.get_job(job.id)
        poller.cycle(hpc)
        time.sleep(0.1)
    return rt.store.get_job(job.id)


def test_a_result_store_that_cannot_be_written_keeps_the_job_finishing(rt, tmp_path):
    job = finishing(rt, tmp_path)
    # a file where the artifact store's results folder must be
    blocker = os.path.dirname(rt.site.artifacts.path("results", job.id))
    os.makedirs(os.path.dirname(blocker), exist_ok=True)
    with open(blocker, "w") as f:
        f.write("not a folder")
    assert drive(rt, job.id) == "results waiting"
    got = rt.store.get_job(job.id)
    assert got.status == "finishing" and "results_waiting" in events(rt.store, job.id)
    assert os.path.isdir(job.remote_dir)  # the only copy stays on the HPC
    os.remove(blocker)
    assert drive(rt, job.id) == "succeeded"
    dest = rt.site.artifacts.path("results", job.id)
    with open(os.path.join(dest, "result", "a.txt")) as f:
        assert f.read() == "12345\n"
    assert os.path.isfile(os.path.join(dest, "result", "sub", "b.txt"))
    assert not os.path.exists(job.remote_dir)  # removed only after the verified copy


def test_a_copy_that_does_not_match_the_listing_is_not_swapped_in(rt, tmp_path):
    job = finishing(rt, tmp_path)
    transport = rt.handlers["local"].transport
    real = transport.download

    async def truncating(remote, local):
        await real(remote, local)
        if remote.endswith("/result"):
            with open(os.path.join(local, "a.txt"), "w") as f:
                f.write("1")  # a short copy
    transport.download = truncating
    assert drive(rt, job.id) == "failed"  # never succeeded on a short copy
    got = rt.store.get_job(job.id)
    assert got.message == ("the job ended but its results could not be collected: "
                           "result/a.txt: 1 bytes collected, 6 on the HPC")
    assert not os.path.exists(rt.site.artifacts.path("results", job.id))
    assert os.path.isdir(job.remote_dir)  # the HPC copy is kept


def test_a_result_the_job_made_unreadable_ends_it_with_a_clear_message(rt, tmp_path):
    job = finishing(rt, tmp_path)
    transport = rt.handlers["local"].transport
    real = transport.download

    async def refusing(remote, local):
        if remote.endswith("/result"):
            raise JobFileError(f"{remote}/sub", "permission denied: the job's file cannot "
                                                "be read")
        await real(remote, local)
    transport.download = refusing
    assert drive(rt, job.id) == "failed"
    got = rt.store.get_job(job.id)
    assert got.message.startswith("the job ended but its results could not be collected: ")
    assert "permission denied" in got.message
    assert os.path.isdir(job.remote_dir)  # not cleaned up after a failed collection


def test_an_unreadable_log_is_reported_once_and_stops_no_other_job(runtime, tmp_path):
    add_app(runtime.store, tmp_path)
    work = tmp_path / "work"
    jobs = []
    for name in ("bad", "good"):
        folder = work / name
        folder.mkdir(parents=True)
        (folder / "stderr.log").write_bytes(b"")
        if name == "bad":
            os.mkfifo(folder / "stdout.log")  # would block an open for good
        else:
            (folder / "stdout.log").write_bytes(b"hello\n")
        job = new_job(runtime.store, remote_dir=str(folder))
        runtime.store.update_job(job.id, status="running")
        jobs.append(runtime.store.get_job(job.id))
    handler = runtime.handlers["local"]
    started = time.monotonic()
    assert tail_logs(runtime, handler, jobs) == 6
    assert tail_logs(runtime, handler, [runtime.store.get_job(j.id) for j in jobs]) == 0
    assert time.monotonic() - started < 5
    bad, good = jobs
    assert runtime.store.read_log(good.id, "stdout")[0] == b"hello\n"
    assert events(runtime.store, bad.id).count(UNREADABLE_EVENT) == 1
    assert UNREADABLE_EVENT not in events(runtime.store, good.id)
    message = [e.message for e in runtime.store.events(bad.id) if e.type == UNREADABLE_EVENT]
    assert message[0].startswith("the stdout log cannot be read: not a regular file")
    # the job's end still reads what it can and records the log as unreadable, once
    assert tail_logs(runtime, handler, [runtime.store.get_job(bad.id)], until_end=True) == 0
    assert events(runtime.store, bad.id).count(UNREADABLE_EVENT) == 1
