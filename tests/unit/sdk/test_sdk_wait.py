"""Job.wait against a fake middleware (it follows the event stream, polls where there is
none, keeps its timeout), and the pure parts it is built on (hpcbridge.progress)."""
from __future__ import annotations

import json
import time

import pytest

from hpcbridge import Client
from hpcbridge.lifecycle import FINAL, STEPS
from hpcbridge.progress import ProgressBar, sse_events


@pytest.fixture
def sse(job_of):
    """sse(status, job_id=None): one server-sent event of the test job in that status."""
    def event(status: str, job_id: str | None = None) -> str:
        info = job_of(None, status=status, **({"id": job_id} if job_id else {})).info
        return f"event: job\nid: {info.id}\ndata: {info.model_dump_json()}\n\n"
    return event


def paths(server) -> list[str]:
    return [path for _, path, _ in server.seen]


def test_wait_follows_the_event_stream(middleware, job_of, sse):
    middleware.statuses = ["queued", "queued"]  # before the stream, and once it is open
    middleware.stream = (200, "text/event-stream", [
        (0, ": connected\n\n"), (0.2, sse("running", "b" * 32)), (0.2, sse("submitted")),
        (0.2, sse("running")), (0.2, ": keepalive\n\n"), (0.2, sse("succeeded")),
        (5, ": keepalive\n\n")])
    job = job_of(Client(middleware.url, "tok", retries=0), status="queued")
    t0 = time.monotonic()
    job.wait(progress=False, poll=0.05)
    assert job.status == "succeeded"
    assert time.monotonic() - t0 < 4  # did not wait for the stream's end
    asks = [p for p in paths(middleware) if p.startswith("/api/v1/jobs/")]
    assert len(asks) == 2 and paths(middleware).count("/api/v1/events/stream") == 1


def test_wait_polls_where_there_is_no_stream(middleware, job_of):
    middleware.statuses = ["queued", "running", "running", "finishing", "succeeded"]
    middleware.stream = (404, "application/json", [(0, '{"error": "not_found"}')])
    job = job_of(Client(middleware.url, "tok", retries=0), status="queued")
    job.wait(progress=False, poll=0.05)
    assert job.status == "succeeded"
    assert paths(middleware).count("/api/v1/events/stream") == 1  # tried once, then polled
    assert len([p for p in paths(middleware) if p.startswith("/api/v1/jobs/")]) == 5


def test_wait_times_out_on_a_quiet_stream(middleware, job_of):
    middleware.statuses = ["running"]
    middleware.stream = (200, "text/event-stream", [(0, ": connected\n\n"), (10, "")])
    job = job_of(Client(middleware.url, "tok", retries=0), status="running")
    t0 = time.monotonic()
    with pytest.raises(TimeoutError):
        job.wait(progress=False, timeout=1)
    assert time.monotonic() - t0 < 4


def test_wait_raises_job_failed_when_asked(middleware, job_of):
    from hpcbridge.errors import JobFailed
    middleware.statuses = ["failed"]
    job = job_of(Client(middleware.url, "tok", retries=0), status="running")
    with pytest.raises(JobFailed, match="failed"):
        job.wait(progress=False, raise_on_failure=True)
    assert job.wait(progress=False).status == "failed"  # without it, no error


# --- hpcbridge.progress ----------------------------------------------------------------
def test_sse_events_yields_one_item_per_line():
    lines = [": connected", "", "event: job", "id: 1", 'data: {"a":', "data: 1}", "",
             ": keepalive", "", "data: x", ""]
    items = list(sse_events(lines))
    assert len(items) == len(lines)
    assert [i for i in items if i[0]] == [("connected", ""), ("data", '{"a":\n1}'),
                                          ("data", "x")]
    assert json.loads(items[6][1]) == {"a": 1}


def test_progress_bar_counts_the_lifecycle_steps():
    bar = ProgressBar("queued", enabled=False)
    try:
        for n, status in enumerate(STEPS):
            bar.show(status, "m" * 100)
            assert bar._bar.n == n and bar._bar.desc == str(status)
            assert bar._bar.postfix == "m" * 60
        for status in FINAL:
            bar.show(status, None)
            assert bar._bar.n == len(STEPS) == bar._bar.total
    finally:
        bar.close()
