"""The panel listens to the event stream (issue #21), in chromium, against the real stack.

The panel opens one EventSource (`/hpcbridge/api/events/stream`, through the Jupyter server
extension, authenticated by the browser's Jupyter cookie) and, while it is connected, makes
no periodic API request: a job submitted elsewhere (the REST API, as a notebook would) shows
up in the list and walks through its statuses from the stream's messages alone; the detail
view fetches the job once and its events once per message. With the stream cut and refused
(a Playwright route answers 503), the panel says so and polls every 3 s; once the stream
gets through again, the notice goes and the polling stops.

A line the running job prints reaches the open log view through the stream's `log`
messages, with no log request. Every request the page sends under /hpcbridge/api/ is
recorded (method, path, time).
"""
from __future__ import annotations

import re
import time
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import expect

pytestmark = [pytest.mark.stack, pytest.mark.slow]

FINAL = {"succeeded", "failed", "cancelled"}
JOB_WAIT = 180  # s; other test runs share Slurm and the login node
STREAM = "events/stream"
POLL_S = 3  # the panel's fallback poll interval


class Requests:
    """The page's requests to /hpcbridge/api/: (monotonic time, method, path under api/)."""

    def __init__(self, page):
        self.seen: list[tuple[float, str, str]] = []
        page.on("request", self._on_request)

    def _on_request(self, request):
        path = urlsplit(request.url).path
        if "/hpcbridge/api/" in path:
            self.seen.append((time.monotonic(), request.method,
                              path.split("/hpcbridge/api/", 1)[1]))

    def since(self, t0: float) -> list[tuple[str, str]]:
        return [(method, path) for t, method, path in self.seen if t >= t0]

    def count(self, t0: float, path: str, method: str = "GET") -> int:
        return sum(1 for m, p in self.since(t0) if (m, p) == (method, path))


def submit_hello(api, name: str, lines: int, delay: int) -> str:
    r = api.post("jobs", json={"app": "hello", "hpc": "slurm",
                               "params": {"name": name, "lines": lines, "delay": delay}})
    assert r.status_code == 201, r.text
    return r.json()["id"]


def describe(api, job_id: str, seen: list[str]) -> str:
    """What the panel showed beside what the API says, for a failure message."""
    job = api.get(f"jobs/{job_id}").json()
    events = [(e["type"], (e["message"] or "")[:80])
              for e in api.get(f"jobs/{job_id}/events").json()]
    return f"panel showed {seen}; the API says {job.get('status')}, events {events}"


def wait_live(page, timeout_ms: int = 30_000) -> None:
    expect(page.locator("#hpcbridge-panel .hpcbridge-root")).to_have_attribute(
        "data-stream", "live", timeout=timeout_ms)


def job_own(path: str, job_id: str) -> bool:
    """A one-off request about this job: the job, its events, logs or results."""
    return re.fullmatch(rf"jobs/{job_id}(/(events|logs|results))?", path) is not None


def test_no_periodic_request_while_the_stream_is_connected_and_polling_when_it_is_not(
        lab_page, bridge, hub):
    page, t = lab_page, lab_page.get_by_test_id
    requests = Requests(page)
    api = bridge.client(hub.tokens["alice"])
    root = page.locator("#hpcbridge-panel .hpcbridge-root")
    wait_live(page)
    expect(t("hpcbridge-quota")).to_contain_text("alice")
    expect(t("hpcbridge-stream-notice")).to_have_count(0)
    page.wait_for_timeout(1000)  # the load that follows the stream's opening has settled

    # --- a job submitted elsewhere appears in the list and changes status, from the stream ---
    t0 = time.monotonic()
    job_id = submit_hello(api, "Stream", lines=10, delay=2)
    row = page.locator(f'[data-testid="hpcbridge-job-row"][data-job-id="{job_id}"]')
    expect(row).to_be_visible(timeout=30_000)
    seen: list[str] = []
    deadline = time.monotonic() + JOB_WAIT
    while time.monotonic() < deadline:
        status = row.get_attribute("data-status", timeout=10_000)
        if not seen or seen[-1] != status:
            seen.append(status)
        if status == "running":
            break
        time.sleep(0.1)
    assert seen[-1] == "running", describe(api, job_id, seen)
    list_phase = requests.since(t0)
    assert list_phase == [], f"the list asked the API while the stream was live: {list_phase}"

    # --- its detail: the job and its events once, then once per message; no timer ---
    t1 = time.monotonic()
    row.click()
    status = t("hpcbridge-job-status")
    expect(status).to_have_attribute("data-status", "succeeded", timeout=JOB_WAIT * 1000)
    page.wait_for_timeout(3000)  # and a while after the end: nothing starts polling
    window = time.monotonic() - t0
    assert window >= 15, f"the observed window was only {window:.1f} s"
    detail_phase = requests.since(t1)
    others = [(m, p) for m, p in detail_phase
              if not job_own(p, job_id) and (m, p) != ("GET", "me")]
    assert others == [], f"requests other than the job's own while live: {others}"
    # the user's quota is loaded once when the job ends, not on a timer
    assert requests.count(t1, "me") <= 1, detail_phase
    # the job itself: once when the view opened (the stream carries the job after that)
    assert requests.count(t1, f"jobs/{job_id}") == 1, detail_phase
    # its events: once on opening, at most once per message after that (not every 2 s)
    events = requests.count(t1, f"jobs/{job_id}/events")
    written = len(api.get(f"jobs/{job_id}/events").json())
    assert 1 <= events <= 1 + written, (written, detail_phase)
    assert requests.count(t0, STREAM) == 0, "the stream stayed open: no reconnect"
    assert seen[0] not in FINAL, seen
    print(f"live window {window:.1f} s: list {len(list_phase)} requests, "
          f"detail {len(detail_phase)}: {sorted(set(p for _, p in detail_phase))}")

    # --- the stream cut and refused: the notice, and polling every 3 s ---
    t("hpcbridge-back").click()
    expect(row).to_have_attribute("data-status", "succeeded")

    def refuse(route):
        route.fulfill(status=503, content_type="application/json",
                      body='{"error": "unavailable", "message": "refused by the test"}')

    def is_stream(url: str) -> bool:
        return urlsplit(url).path.endswith("/hpcbridge/api/" + STREAM)

    page.route(is_stream, refuse)
    bridge.stop("server")  # ends the open stream; the browser's reconnects meet the route
    bridge._spawn("server", "server")  # same config and port
    bridge.wait_health()
    notice = t("hpcbridge-stream-notice")
    expect(notice).to_have_text("live updates unavailable — refreshing every 3 s",
                                timeout=30_000)
    expect(root).to_have_attribute("data-stream", "unavailable")
    t2 = time.monotonic()
    page.wait_for_timeout(3 * POLL_S * 1000 + 500)
    polls = requests.count(t2, "jobs")
    assert polls >= 3, f"{polls} list polls in {3 * POLL_S} s without the stream"
    # the fallback does not flood either: the route saw a few attempts, not a loop
    attempts = requests.count(t2, STREAM)
    assert attempts <= 2, f"{attempts} stream attempts in {3 * POLL_S} s"

    # --- the stream gets through again: the notice goes and the polling stops ---
    page.unroute(is_stream, refuse)
    wait_live(page, timeout_ms=45_000)  # the next attempt (every 20 s)
    expect(notice).to_have_count(0)
    page.wait_for_timeout(1000)
    t3 = time.monotonic()
    page.wait_for_timeout(3 * POLL_S * 1000)
    assert requests.count(t3, "jobs") == 0, requests.since(t3)
    assert requests.since(t3) == [], requests.since(t3)
    assert not page.errors, page.errors


def test_log_lines_reach_the_open_log_view_without_a_log_request(lab_page, bridge, hub):
    page, t = lab_page, lab_page.get_by_test_id
    requests = Requests(page)
    api = bridge.client(hub.tokens["alice"])
    wait_live(page)
    job_id = submit_hello(api, "Tail", lines=12, delay=2)
    row = page.locator(f'[data-testid="hpcbridge-job-row"][data-job-id="{job_id}"]')
    expect(row).to_be_visible(timeout=30_000)
    row.click()
    expect(t("hpcbridge-job-status")).to_have_attribute("data-status", "running",
                                                        timeout=JOB_WAIT * 1000)
    log = t("hpcbridge-log-stdout")
    expect(log).to_contain_text("[1/12] Hello, Tail!", timeout=60_000)
    t0 = time.monotonic()
    shown = log.inner_text()
    # a later line, printed after the view has what was there: it comes with the stream
    later = next(i for i in range(2, 13) if f"[{i}/12]" not in shown)
    expect(log).to_contain_text(f"[{later}/12] Hello, Tail!", timeout=30_000)
    assert requests.count(t0, f"jobs/{job_id}/logs") == 0, requests.since(t0)
    expect(t("hpcbridge-job-status")).to_have_attribute("data-status", "succeeded",
                                                        timeout=JOB_WAIT * 1000)
    expect(log).to_contain_text("[12/12] Hello, Tail!", timeout=30_000)
    expect(log).to_have_attribute("data-complete", "true", timeout=30_000)
