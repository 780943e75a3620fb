"""The forwarder: /hpcbridge/api/<path> of the user's Jupyter server → the middleware's
/api/v1/<path>, with the user's token, streaming both ways.

Requests are authenticated by the Jupyter server itself (its auth and XSRF rules) first.
"""
from __future__ import annotations

import asyncio

from tornado import iostream, web

from .base import BaseHandler, ClientGone

HOP_HEADERS = {"connection", "keep-alive", "transfer-encoding", "content-length",
               "content-encoding", "server", "date"}

_GONE = object()  # queued for a body producer when the browser went away


# request headers the middleware acts on, passed on as they are
PASSED_HEADERS = ("Idempotency-Key", "Last-Event-ID")


@web.stream_request_body
class ForwardHandler(BaseHandler):
    """/hpcbridge/api/<path> → <middleware>/api/v1/<path>, streaming both ways.

    The upstream request starts in prepare() so that a large upload flows through as
    it arrives (tornado calls data_received before post())."""

    _fetch: asyncio.Future | None = None  # the upstream request, once prepare() started it
    _gone = False  # the browser closed the connection

    # True: the middleware's answers of any status pass as they are (a proxied service's
    # own pages and redirects); False: an error becomes the extension's JSON error
    raw = False

    async def prepare(self):
        await super().prepare()
        if self.current_user is None:
            raise web.HTTPError(403, "log in to Jupyter first")
        self.request.connection.set_max_body_size(1 << 34)
        self._chunks: asyncio.Queue[bytes | None] = asyncio.Queue(maxsize=16)
        self._status, self._started, self._error_body = 200, False, []
        has_body = self.request.method in ("POST", "PUT", "PATCH")
        request = self.upstream(
            self.upstream_path(), self.request.method, query=self.request.query,
            body_producer=self._produce if has_body else None,
            header_callback=self._on_header, streaming_callback=self._on_chunk,
            follow_redirects=not self.raw)
        request.headers.update(self.passed_headers())
        self._fetch = asyncio.ensure_future(self.fetch(request))

    def upstream_path(self) -> str:
        """The path under the middleware's /api/v1/."""
        return self.path_args[0]

    def passed_headers(self) -> dict[str, str]:
        """The browser's request headers that go on to the middleware."""
        # a client's retry key and its stream resume point
        return {name: self.request.headers[name] for name in PASSED_HEADERS
                if name in self.request.headers}

    async def data_received(self, chunk: bytes):
        await self._send_chunk(chunk)

    async def _send_chunk(self, chunk: bytes | None):
        """Hand a chunk to the upstream request, unless that request has ended (then the
        rest of the browser's body is read and dropped instead of waiting forever)."""
        if self._fetch.done():
            return
        put = asyncio.ensure_future(self._chunks.put(chunk))
        await asyncio.wait({put, self._fetch}, return_when=asyncio.FIRST_COMPLETED)
        if not put.done():
            put.cancel()

    async def _produce(self, write):
        while (chunk := await self._chunks.get()) is not None:
            if chunk is _GONE:
                raise ClientGone()
            await write(chunk)

    def _on_header(self, line: str):
        if line.startswith("HTTP/"):
            self._status = int(line.split(" ", 2)[1])
        elif ":" in line and (self._status < 400 or self.raw):
            name, value = (part.strip() for part in line.split(":", 1))
            if name.lower() == "set-cookie":  # one header per cookie
                self.add_header(name, value)
            elif name.lower() not in HOP_HEADERS:
                self.set_header(name, value)

    async def _on_chunk(self, chunk: bytes):
        # tornado awaits this before reading on: the middleware is read as fast as the
        # browser takes it (no unbounded buffering of a large download), server-sent
        # events reach the browser at once, and a browser that left ends the upstream
        # request at its next chunk (an idle event stream sends one every 15 s).
        if self._status >= 400 and not self.raw:
            self._error_body.append(chunk)
            return
        if self._gone:
            raise ClientGone()
        if not self._started:
            self.set_status(self._status)
            self._started = True
        self.write(chunk)
        try:
            await self.flush()
        except iostream.StreamClosedError:
            self._gone = True
            raise ClientGone() from None

    async def _relay(self):
        await self._send_chunk(None)
        response = await self._fetch
        if response is None or self._finished:
            return
        if self._started and response.code == 599:
            self.write_unreachable(response.error)  # drops the connection (see there)
            return
        # an error body streamed to us is in _error_body; a probe's answer has its own
        if (not self.raw or response.code == 599) and \
                self.relay_error(response, b"".join(self._error_body) or None):
            return
        if not self._started:
            self.set_status(response.code)
        self.finish()

    def on_connection_close(self):
        self._gone = True
        if self._fetch is not None and not self._fetch.done():
            # a body producer waiting for the browser's next chunk stops (and with it
            # the upstream request) instead of waiting for the request timeout
            while not self._chunks.empty():
                self._chunks.get_nowait()
            self._chunks.put_nowait(_GONE)

    async def get(self, path):
        await self._relay()

    async def post(self, path):
        await self._relay()

    async def put(self, path):
        await self._relay()

    async def delete(self, path):
        await self._relay()
