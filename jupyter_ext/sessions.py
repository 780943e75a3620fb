"""The session proxy: <base>/hpcbridge/api/sessions/<id>/proxy/<rest> of the user's Jupyter
server → the middleware's /api/v1/sessions/<id>/proxy/<rest>, which reaches the session's
service on its compute node.

HTTP goes through the forwarder (streamed both ways) in its raw mode: the service's pages,
redirects and cookies pass as they are. A WebSocket upgrade opens a WebSocket to the
middleware first (so the service's answer, e.g. a 404 for another user's session, reaches
the browser as an HTTP answer, and the subprotocol the service chose is the one the browser
gets), then relays frames both ways, each side read only as fast as the other takes them.
"""
from __future__ import annotations

import asyncio

from tornado import httpclient, web, websocket
from tornado.iostream import StreamClosedError

from hpcbridge.errors import code_for_status

from .base import PREFIX_HEADER
from .proxy import ForwardHandler

API_MARK = "/hpcbridge/api/"
# request headers that describe this hop (or that the forwarder sets itself)
HOP_REQUEST_HEADERS = {
    "host", "authorization", "connection", "keep-alive", "transfer-encoding", "te",
    "trailer", "upgrade", "content-length", "accept-encoding", "proxy-authorization",
    "proxy-connection", "origin", "cookie", "sec-websocket-key", "sec-websocket-version",
    "sec-websocket-extensions", "sec-websocket-protocol", PREFIX_HEADER.lower()}
# cookies that log the browser in to this Jupyter server or its hub: never sent on to a
# service (which runs the user's code on a compute node)
PRIVATE_COOKIES = ("username-", "jupyterhub-")
MAX_MESSAGE = 256 << 20  # a notebook output with images can be large
PING_SECONDS = 30.0  # a silent peer (either side) is found dead after about twice this
WRITE_SECONDS = 300.0  # a side that takes no frame for this long ends the relay


def service_cookies(header: str) -> str:
    """The Cookie header without this server's and the hub's login cookies."""
    kept = [part.strip() for part in header.split(";")
            if part.strip() and not part.strip().startswith(PRIVATE_COOKIES)]
    return "; ".join(kept)


def is_upgrade(request) -> bool:
    return request.method == "GET" and \
        request.headers.get("Upgrade", "").lower() == "websocket"


class SessionProxyHandler(websocket.WebSocketHandler, ForwardHandler):
    """Any method and WebSocket at sessions/<id>/proxy/<rest>, for the server's user."""

    raw = True
    _upstream: websocket.WebSocketClientConnection | None = None
    _pump: asyncio.Task | None = None

    # --- both ---------------------------------------------------------------------
    def upstream_path(self) -> str:
        # the path as the browser sent it (still %-encoded, unlike the route's group)
        raw = self.request.path
        return raw[raw.index(API_MARK) + len(API_MARK):]

    def passed_headers(self) -> dict[str, str]:
        headers = {name: value for name, value in self.request.headers.get_all()
                   if name.lower() not in HOP_REQUEST_HEADERS}
        cookies = service_cookies(self.request.headers.get("Cookie", ""))
        if cookies:
            headers["Cookie"] = cookies
        length = self.request.headers.get("Content-Length")
        if length and "Transfer-Encoding" not in self.request.headers:
            # the body streams on with its length, not chunked: a small service may not
            # read a chunked request body
            headers["Content-Length"] = length
        return headers

    def check_origin(self, origin: str = "") -> bool:
        # Jupyter's rule (same host, or its allow_origin settings) for WebSockets too
        return ForwardHandler.check_origin(self, origin)

    def check_xsrf_cookie(self) -> None:
        """Jupyter's XSRF check; a request that fails it (the proxied app sends its own
        XSRF token, not this server's) passes when the browser says it comes from this
        very origin (Origin header), which a cross-site page cannot forge."""
        try:
            return super().check_xsrf_cookie()
        except web.HTTPError:
            origin = self.request.headers.get("Origin")
            if not origin or not ForwardHandler.check_origin(self, origin):
                raise

    def on_connection_close(self) -> None:
        if self.ws_connection is not None:
            websocket.WebSocketHandler.on_connection_close(self)
        else:
            ForwardHandler.on_connection_close(self)

    async def prepare(self):
        if is_upgrade(self.request):
            # Jupyter's own checks (login) only: the upstream side opens in get()
            await super(ForwardHandler, self).prepare()
            if self.current_user is None:
                self.write_json_error("forbidden", "log in to Jupyter first")
            return
        await ForwardHandler.prepare(self)

    async def get(self, path):
        if not is_upgrade(self.request):
            return await self._relay()
        self._upstream = await self._connect()
        if self._upstream is not None:
            await websocket.WebSocketHandler.get(self, path)

    async def head(self, path):
        await self._relay()

    async def patch(self, path):
        await self._relay()

    async def options(self, path):
        await self._relay()

    # --- WebSocket ----------------------------------------------------------------
    @property
    def max_message_size(self) -> int:
        return MAX_MESSAGE

    @property
    def ping_interval(self) -> float:
        return PING_SECONDS

    @property
    def ping_timeout(self) -> float:
        return PING_SECONDS

    async def _connect(self) -> websocket.WebSocketClientConnection | None:
        """The WebSocket to the middleware; None when it refused (answered here)."""
        app = self.extensionapp
        url = app.api_url.replace("http", "ws", 1) + "/" + self.upstream_path()
        if self.request.query:
            url += "?" + self.request.query
        headers = {"Authorization": f"token {app.token}", PREFIX_HEADER: self.api_prefix,
                   **self.passed_headers()}
        protocols = [p.strip() for p in
                     self.request.headers.get("Sec-WebSocket-Protocol", "").split(",")
                     if p.strip()]
        request = httpclient.HTTPRequest(url, headers=headers,
                                         connect_timeout=app.connect_timeout,
                                         request_timeout=app.connect_timeout)
        try:
            return await asyncio.wait_for(websocket.websocket_connect(
                request, subprotocols=protocols or None, max_message_size=MAX_MESSAGE,
                ping_interval=PING_SECONDS, ping_timeout=PING_SECONDS),
                app.connect_timeout + 5)
        except httpclient.HTTPClientError as exc:
            if exc.code == 599:  # no answer at all
                self.write_unreachable(exc)
            else:
                self._answer_refusal(exc)
        except (asyncio.TimeoutError, TimeoutError):
            self.write_json_error("gateway_timeout", "the hpcbridge middleware did not open "
                                  f"the WebSocket within {app.connect_timeout + 5:.0f} s")
        except (OSError, StreamClosedError, websocket.WebSocketError) as exc:
            self.write_unreachable(exc)
        return None

    def _answer_refusal(self, exc: httpclient.HTTPClientError) -> None:
        """The middleware's (or service's) non-101 answer, as JSON if it was JSON."""
        body = exc.response.body if exc.response is not None else b""
        if self.relay_error(_Answer(exc.code, body)):
            return
        self.write_json_error(code_for_status(exc.code), f"hpcbridge middleware answered "
                              f"{exc.code} to the WebSocket", status=exc.code)

    def select_subprotocol(self, subprotocols):
        return self._upstream.selected_subprotocol if self._upstream else None

    def open(self, *args):
        self._pump = asyncio.ensure_future(self._from_upstream())

    async def on_message(self, message):
        # awaited by tornado before it reads the browser's next frame
        try:
            await asyncio.wait_for(self._upstream.write_message(
                message, binary=isinstance(message, bytes)), WRITE_SECONDS)
        except (websocket.WebSocketClosedError, StreamClosedError, asyncio.TimeoutError):
            self.close(1011, "the session's service does not take messages")

    async def _from_upstream(self) -> None:
        upstream = self._upstream
        try:
            # no deadline on the read: a quiet service is fine (pings find a dead one)
            while (message := await upstream.read_message()) is not None:
                await asyncio.wait_for(self.write_message(
                    message, binary=isinstance(message, bytes)), WRITE_SECONDS)
        except (websocket.WebSocketClosedError, StreamClosedError, asyncio.TimeoutError):
            upstream.close()
            self.close()
            return
        code = upstream.close_code
        # 1005/1006/1015 may not be sent in a close frame
        self.close(code if code and code not in (1005, 1006, 1015) else None,
                   upstream.close_reason)

    def on_close(self) -> None:
        if self._upstream is not None:
            self._upstream.close(self.close_code if self.close_code and self.close_code
                                 not in (1005, 1006, 1015) else None, self.close_reason)
        if self._pump is not None and not self._pump.done():
            self._pump.cancel()


class _Answer:
    """An HTTP answer as relay_error reads one."""

    def __init__(self, code: int, body: bytes):
        self.code, self.body, self.error = code, body, None
