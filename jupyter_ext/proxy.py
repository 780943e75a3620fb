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

    async def prepare(self):
        await super().prepare()
        if self.current_user is None:
            raise web.HTTPError(403, "log in to Jupyter first")
        self.request.connection.set_max_body_size(1 << 34)
        self._chunks: asyncio.Queue[bytes | None] = asyncio.Queue(maxsize=16)
        self._status, self._started, self._error_body = 200, False, []
        has_body = self.request.method in ("POST", "PUT", "PATCH")
        request = self.upstream(
            self.path_args[0], self.request.method, query=self.request.query,
            body_producer=self._produce if has_body else None,
            header_callback=self._on_header, streaming_callback=self._on_chunk)
        for name in PASSED_HEADERS:  # a client's retry key and its stream resume point
            if name in self.request.headers:
                request.headers[name] = self.request.headers[name]
        self._fetch = asyncio.ensure_future(self.fetch(request))

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
        elif ":" in line and self._status < 400:
            name, value = line.split(":", 1)
            if name.strip().lower() not in HOP_HEADERS:
                self.set_header(name.strip(), value.strip())

    async def _on_chunk(self, chunk: bytes):
        # tornado awaits this before reading on: the middleware is read as fast as the
        # browser takes it (no unbounded buffering of a large download), server-sent
        # events reach the browser at once, and a browser that left ends the upstream
        # request at its next chunk (an idle event stream sends one every 15 s).
        if self._status >= 400:
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
        # an error body streamed to us is in _error_body; a probe's answer has its own
        if self.relay_error(response, b"".join(self._error_body) or None):
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
