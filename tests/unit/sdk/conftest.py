"""Fixtures of the SDK's unit tests: a tiny HTTP server standing in for the middleware (or a
proxy in front of it), on a real socket. No stack needed."""
from __future__ import annotations

import http.server
import json
import threading
import time

import pytest

from hpcbridge import Client

JOB = {"id": "a" * 32, "user": "alice", "app": "hello", "hpc": "slurm", "status": "succeeded",
       "created_at": "2024-01-01T00:00:00Z", "updated_at": "2024-01-01T00:00:00Z"}


class FakeMiddleware(http.server.BaseHTTPRequestHandler):
    """Every request gets `server.answer` (status, content type, body), except: with
    `server.statuses`, GET jobs/<id> answers the job in the next of them (the last one
    sticks); with `server.stream` (status, content type, [(delay, text)]), events/stream
    answers those chunks as they come (a None chunk cuts the connection); with `server.cut_posts` = n, the next n POST /jobs
    are read and the connection closed without an answer."""

    protocol_version = "HTTP/1.1"

    def _answer(self):
        self._read_body()
        server = self.server
        server.seen.append((self.command, self.path, self.headers.get("Authorization")))
        if self.path.startswith("/api/v1/events/stream"):
            server.last_event_ids.append(self.headers.get("Last-Event-ID"))
        if self.command == "POST" and self.path == "/api/v1/jobs":
            server.idempotency_keys.append(self.headers.get("Idempotency-Key"))
            if server.cut_posts:  # the request arrived; the answer never does
                server.cut_posts -= 1
                self.close_connection = True
                return
        if server.stream and self.path.startswith("/api/v1/events/stream"):
            return self._send_stream(*server.stream)
        if server.statuses and self.path.startswith("/api/v1/jobs/"):
            status = server.statuses.pop(0) if len(server.statuses) > 1 else server.statuses[0]
            return self._send(200, "application/json",
                              json.dumps({**JOB, "status": status}).encode())
        self._send(*server.answer)

    do_GET = do_POST = do_PUT = do_DELETE = _answer

    def _read_body(self):
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        elif self.headers.get("Transfer-Encoding") == "chunked":
            while size := int(self.rfile.readline().strip() or b"0", 16):
                self.rfile.read(size + 2)
            self.rfile.readline()

    def _send(self, status: int, ctype: str, body: bytes):
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _send_stream(self, status: int, ctype: str, chunks):
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        for delay, text in chunks:
            time.sleep(delay)
            if text is None:  # cut: the connection ends without the stream's last chunk
                self.close_connection = True
                return
            data = text.encode()
            self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
            self.wfile.flush()
        self.wfile.write(b"0\r\n\r\n")

    def log_message(self, *args):
        pass


@pytest.fixture
def middleware():
    """The fake middleware's server: set `answer`, `statuses`, `stream`; read `seen`."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), FakeMiddleware)
    server.seen, server.statuses, server.stream = [], None, None
    server.last_event_ids, server.idempotency_keys, server.cut_posts = [], [], 0
    server.answer = (200, "application/json", b"{}")
    server.url = f"http://127.0.0.1:{server.server_address[1]}"
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture
def canned(middleware):
    """canned(status, body, ctype): a Client of a middleware answering that to everything."""
    def answer(status, body, ctype="application/json"):
        middleware.answer = (status, ctype, body if isinstance(body, bytes) else
                             json.dumps(body).encode())
        return Client(middleware.url, "tok-123", retries=0)
    answer.server = middleware
    return answer


@pytest.fixture
def job_of():
    """job_of(client, **fields): a Job of JOB (fields changed) on that client."""
    from hpcbridge.client import Job
    from hpcbridge.schemas import JobInfo
    return lambda client, **fields: Job(client, JobInfo(**{**JOB, **fields}))
