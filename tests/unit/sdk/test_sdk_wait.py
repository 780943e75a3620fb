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
def test_sse_events_yields_one_item_per_line_and_the_id_once_a_message_is_whole():
    lines = [": connected", "", "event: job", "id: 1", 'data: {"a":', "data: 1}", "",
             ": keepalive", "id: 7", "", "data: x", "", "id: 9", "data: cut"]
    items = list(sse_events(lines))
    # one item per line; a blank line that ends a message with data and an id: two
    assert len(items) == len(lines) + 1
    assert [i for i in items if i[0]] == [("connected", ""), ("data", '{"a":\n1}'),
                                          ("id", "1"), ("id", "7"), ("data", "x")]
    assert json.loads(items[6][1]) == {"a": 1}  # the message's data before its id


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


# --- a cut stream, resumed --------------------------------------------------------------
def test_wait_resumes_a_cut_stream_after_its_last_event(middleware, job_of, sse):
    """The stream is cut mid-message: the SDK opens it again with the id of the last whole
    message (header and query), asks for the job once more, and sees the end."""
    middleware.statuses = ["running", "running", "running", "succeeded"]
    middleware.stream = (200, "text/event-stream", [
        (0, ": connected\n\n"), (0.1, sse("running").replace(f"id: {'a' * 32}", "id: 41")),
        (0.1, "event: job\nid: 42\ndata: {\"cut")])  # then the connection ends
    job = job_of(Client(middleware.url, "tok", retries=0), status="running")
    job.wait(progress=False, timeout=20, poll=0.05)
    assert job.status == "succeeded"
    streams = [(p, h) for _, p, h in middleware.seen if p.startswith("/api/v1/events/stream")]
    assert len(streams) >= 2
    assert streams[0][0] == "/api/v1/events/stream"
    assert streams[1][0] == "/api/v1/events/stream?last_event_id=41"
    assert middleware.last_event_ids[1] == "41"


def test_wait_gives_up_when_the_stream_stays_cut(middleware, job_of, monkeypatch):
    from hpcbridge import client as C
    from hpcbridge.errors import Unavailable
    monkeypatch.setattr(C, "STREAM_RETRIES", 2)
    middleware.statuses = ["running"]
    middleware.stream = (200, "text/event-stream", [(0, None)])
    job = job_of(Client(middleware.url, "tok", retries=0), status="running")
    t0 = time.monotonic()
    with pytest.raises(Unavailable):
        job.wait(progress=False)
    assert 5 < time.monotonic() - t0 < 20  # paused 2 s, then 4 s, between the tries
    assert paths(middleware).count("/api/v1/events/stream") == 3


def test_wait_polls_when_streams_end_before_they_open(middleware, job_of, monkeypatch):
    """A proxy that answers the stream with an empty 200 again and again: no busy loop,
    and after a few tries the job is asked for instead."""
    from hpcbridge import client as C
    monkeypatch.setattr(C, "STREAM_RETRIES", 1)
    middleware.statuses = ["running"] * 4 + ["succeeded"]
    middleware.stream = (200, "text/event-stream", [])
    job = job_of(Client(middleware.url, "tok", retries=0), status="running")
    job.wait(progress=False, timeout=30, poll=0.05)
    assert job.status == "succeeded"
    assert paths(middleware).count("/api/v1/events/stream") == 2


def test_submit_retries_a_cut_request_with_the_same_key(middleware, job_of):
    """The first two POSTs are cut before any answer; the third gets the job: one key
    for all three."""
    middleware.cut_posts = 2
    info = job_of(None).info
    middleware.answer = (201, "application/json", info.model_dump_json().encode())
    job = Client(middleware.url, "tok", retries=0).submit("hello")
    assert job.id == info.id
    keys = middleware.idempotency_keys
    assert len(keys) == 3 and len(set(keys)) == 1 and keys[0]
    # a new submit call is a new job: a new key
    Client(middleware.url, "tok", retries=0).submit("hello")
    assert len(set(middleware.idempotency_keys)) == 2
