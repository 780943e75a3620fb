"""The extension carries the panel's EventSource (issue #21), in a plain `jupyter server`
in front of a stand-in middleware whose event stream stays open. No stack.

- An EventSource sends no headers of its own: the browser's Jupyter login cookie must be
  enough for a GET of the stream (Jupyter checks XSRF only on other methods), and the
  resume point travels as `?last_event_id=`.
- Each message reaches the browser when the middleware writes it.
- A stream that the extension's request_timeout cuts is dropped, never ended with a JSON
  error appended to it (an EventSource would read that as a message, and a download cut
  that way would look whole).
"""
from __future__ import annotations

import http.server
import json
import threading
import time

import httpx
import pytest

pytestmark = [pytest.mark.slow]


class _Stream(http.server.BaseHTTPRequestHandler):
    """`GET /api/v1/events/stream`: ": connected", then one message per `server.send`
    (a queue of strings), open until the client leaves."""

    def do_GET(self):
        self.server.requests.append((self.path, dict(self.headers)))
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.end_headers()  # HTTP/1.0: the body ends when the connection closes
        try:
            self.wfile.write(b": connected\n\n")
            self.wfile.flush()
            while not self.server.stopping.is_set():
                if self.server.outbox:
                    self.wfile.write(self.server.outbox.pop(0).encode())
                    self.wfile.flush()
                time.sleep(0.02)
        except (BrokenPipeError, ConnectionResetError):
            pass

    def log_message(self, *args):
        pass


@pytest.fixture
def stream_middleware():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Stream)
    server.daemon_threads = True
    server.requests, server.outbox, server.stopping = [], [], threading.Event()
    server.url = f"http://127.0.0.1:{server.server_address[1]}"
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    yield server
    server.stopping.set()
    server.shutdown()
    server.server_close()


def login_cookies(server) -> httpx.Cookies:
    """The cookies a browser holds after opening JupyterLab with ?token= (its login)."""
    with httpx.Client(follow_redirects=True, timeout=30) as browser:
        r = browser.get(f"{server.url}/api/status", params={"token": server.headers[
            "Authorization"].split()[1]})
        assert r.status_code == 200, r.text
        assert browser.cookies, "no login cookie after ?token="
        return browser.cookies


def test_an_eventsource_gets_through_with_the_login_cookie_and_each_message_at_once(
        jupyter_server, stream_middleware):
    server = jupyter_server({"HPCBRIDGE_URL": stream_middleware.url, "HPCBRIDGE_TOKEN": "t"})
    cookies = login_cookies(server)
    url = f"{server.url}/hpcbridge/api/events/stream?last_event_id=41"
    # what an EventSource sends: cookies, Accept, a Referer of the page; no token, no XSRF
    headers = {"Accept": "text/event-stream", "Cache-Control": "no-cache",
               "Referer": f"{server.url}/lab"}
    got: list[tuple[float, str]] = []
    with httpx.Client(cookies=cookies, timeout=httpx.Timeout(30, read=30)) as browser, \
            browser.stream("GET", url, headers=headers) as r:
        assert r.status_code == 200, r.read()
        assert r.headers["content-type"].startswith("text/event-stream")
        lines = r.iter_lines()
        assert next(lines) == ": connected"
        for n in (1, 2):
            sent = time.monotonic()
            stream_middleware.outbox.append(f'event: job\nid: {41 + n}\ndata: {{"n": {n}}}\n\n')
            for line in lines:
                if line.startswith("data:"):
                    got.append((time.monotonic() - sent, line))
                    break
    assert [line for _, line in got] == ['data: {"n": 1}', 'data: {"n": 2}']
    assert max(delay for delay, _ in got) < 1.0, got  # not held back until more comes
    path, seen = stream_middleware.requests[0]
    assert path == "/api/v1/events/stream?last_event_id=41"
    assert seen["Authorization"] == "token t"  # the user's token added by the extension


def test_a_stream_without_the_cookie_is_refused(jupyter_server, stream_middleware):
    server = jupyter_server({"HPCBRIDGE_URL": stream_middleware.url, "HPCBRIDGE_TOKEN": "t"})
    r = httpx.get(f"{server.url}/hpcbridge/api/events/stream", timeout=30)
    assert r.status_code == 403, r.text
    assert r.json()["error"] == "forbidden", r.text
    assert stream_middleware.requests == []


def test_a_stream_cut_by_the_request_timeout_is_dropped_not_ended_with_an_error(
        jupyter_server, stream_middleware, tmp_path):
    # the extension's request_timeout, from the config dir the server fixture uses
    config = tmp_path / "jupyter0" / "config"
    config.mkdir(parents=True)
    (config / "jupyter_server_config.json").write_text(
        json.dumps({"HPCBridgeExtension": {"request_timeout": 2.0}}))
    server = jupyter_server({"HPCBRIDGE_URL": stream_middleware.url, "HPCBRIDGE_TOKEN": "t"})
    body: list[str] = []
    started = time.monotonic()
    with pytest.raises(httpx.RemoteProtocolError):  # the chunked body never ends cleanly
        with httpx.stream("GET", f"{server.url}/hpcbridge/api/events/stream",
                          headers=server.headers, timeout=30) as r:
            assert r.status_code == 200
            for line in r.iter_lines():
                body.append(line)
    assert body[0] == ": connected", body
    assert not any("error" in line for line in body), body
    assert time.monotonic() - started < 20, "the stream was not cut at the request timeout"
