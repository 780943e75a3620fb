"""The proxy to a running session's service: any method at
`<api>/sessions/<id>/proxy/<rest>`, HTTP and WebSocket, over the HPC connector pool's SSH
port forwarding (a direct-tcpip channel on a pooled connection, never a new SSH connection).

HTTP is streamed both ways and spoken with h11 (a well-kept HTTP/1.1 state machine) toward
the service: bounded response headers, a deadline per phase. A WebSocket is not parsed at
all: the upgrade request goes to the service as it is (path rewritten), and on its `101`
the client's connection is detached from tornado and spliced byte for byte to the tunnel —
the simplest correct way (extensions, subprotocols, pings and close frames pass unchanged).

Toward the service the caller's Authorization and cookies are dropped and the session's
own token is sent instead; the path `<api>/sessions/<id>/proxy/<rest>` becomes
`<base_url><rest>` (the service serves under its base_url). Traffic counts as activity,
written at most every SessionSettings.activity_write_seconds per session."""
from __future__ import annotations

import asyncio
import logging

import h11
from tornado import iostream, web

from hpcbridge.connectors.errors import ConnectorError, HPCUnavailable, RemoteTimeout

from . import errors as E
from .handlers.base import APIHandler
from .sessiontunnels import ACTIVITY, IDLE, Tunnels

__all__ = ["ProxyHandler", "Tunnels"]

log = logging.getLogger("hpcbridge.server")
MAX_HEADER_BYTES = 64 << 10
CHUNK = 64 << 10
# never forwarded either way (RFC 9110 7.6.1), nor the caller's credentials toward the service
HOP_BY_HOP = {"connection", "keep-alive", "proxy-connection", "proxy-authenticate",
              "proxy-authorization", "te", "trailer", "transfer-encoding", "upgrade"}
# (Expect: tornado answers 100-continue to the caller itself)
TO_SERVICE_DROPPED = HOP_BY_HOP | {"authorization", "cookie", "host", "content-length",
                                   "expect", "x-hpcbridge-api-prefix"}
FROM_SERVICE_DROPPED = HOP_BY_HOP | {"set-cookie", "content-length", "server", "date"}


class BadGateway(E.APIError):
    code = "bad_gateway"


class GatewayTimeout(E.APIError):
    code = "gateway_timeout"


def service_error(exc: Exception) -> E.APIError:
    """A failure on the way to the service, as the caller's error."""
    if isinstance(exc, (RemoteTimeout, asyncio.TimeoutError)):
        return GatewayTimeout(f"the session's service did not answer in time: {exc}")
    if isinstance(exc, HPCUnavailable):
        return E.Unavailable(f"the session's HPC cannot be reached now: {exc}")
    if isinstance(exc, ConnectorError):
        return BadGateway(f"the session's service cannot be reached: {exc}")
    return BadGateway(f"the session's service broke the connection: "
                      f"{type(exc).__name__}: {exc}")


@web.stream_request_body
class ProxyHandler(APIHandler):
    """Streams a request to the session's service and its answer back (see the module)."""

    SUPPORTED_METHODS = ("GET", "HEAD", "POST", "DELETE", "PATCH", "PUT", "OPTIONS")
    tunnel = None
    h11conn: h11.Connection | None = None

    async def prepare(self):
        self._body = None
        self.refuse_larger_than(self.ctx.max_upload_bytes)
        await self.authenticate()
        self.request.connection.set_max_body_size(self.ctx.max_upload_bytes)
        conf = self.ctx.session_settings
        self.record = self.running_session(self.path_kwargs["session_id"])
        ACTIVITY.seen(self.ctx.store, self.record.id, conf.activity_write_seconds)
        self.head = h11.Request(method=self.request.method, target=self.target(),
                                headers=self.upstream_headers())
        self.reused = self.bodiless() and (tunnel := IDLE.take(self.record.id)) is not None
        try:
            if self.reused:  # the head goes with the first read (response_head)
                self.tunnel = tunnel
            else:
                await self.open_tunnel()
                await self.send_head()
        except E.APIError:
            raise
        except Exception as exc:
            raise service_error(exc) from exc

    async def open_tunnel(self) -> None:
        self.tunnel = await self.ctx.tunnels.open(
            self.record.hpc, self.record.node, self.record.port,
            self.ctx.session_settings.proxy_connect_timeout)

    async def send_head(self) -> None:
        self.h11conn = h11.Connection(h11.CLIENT, max_incomplete_event_size=MAX_HEADER_BYTES)
        await self.send_upstream(self.head)

    def bodiless(self) -> bool:
        """Idempotent, no body, no upgrade: safe to send again on a fresh connection."""
        headers = self.request.headers
        return self.request.method in ("GET", "HEAD", "OPTIONS") and not self.websocket() \
            and "Content-Length" not in headers and "Transfer-Encoding" not in headers

    async def response_head(self):
        """The service's response head; a kept connection the service closed meanwhile
        is replaced by a fresh one, once (the request has no body: nothing is lost)."""
        try:
            if self.h11conn is None:
                await self.send_head()
            await self.send_upstream(h11.EndOfMessage())  # an upgrade's too: no body
            response = await self.next_event()
            if isinstance(response, h11.ConnectionClosed):
                raise h11.RemoteProtocolError("the connection closed before an answer")
        except Exception as exc:
            if not self.reused or isinstance(exc, asyncio.TimeoutError):
                raise  # (a slow answer is the service's, not a closed connection's)
            log.debug("kept connection to session %s closed: %s", self.record.id, exc)
            self.tunnel.close()
            self.reused = False
            await self.open_tunnel()
            await self.send_head()
            return await self.response_head()
        return response

    def running_session(self, session_id: str):
        user = None if self.user.admin else self.user.name
        record = self.ctx.store.get_session(session_id, user=user)
        if record is None:
            raise E.NotFound(f"no session {session_id}")
        if record.status == "starting":
            self.set_header("Retry-After", "2")
            raise E.Unavailable(f"session {session_id} is still starting")
        if record.status != "running" or not record.node or not record.port:
            raise E.Conflict(f"session {session_id} is {record.status}")
        return record

    def target(self) -> bytes:
        """`<base_url><rest>?<query>` from the raw (still percent-encoded) path."""
        marker = f"/sessions/{self.record.id}/proxy/"
        path = self.request.path
        rest = path[path.index(marker) + len(marker):]
        query = self.request.query
        return (self.record.base_url + rest + (f"?{query}" if query else "")).encode()

    def websocket(self) -> bool:
        return self.request.method == "GET" and \
            self.request.headers.get("Upgrade", "").lower() == "websocket"

    def upstream_headers(self) -> list[tuple[str, str]]:
        headers = [(k, v) for k, v in self.request.headers.get_all()
                   if k.lower() not in TO_SERVICE_DROPPED]
        headers += [("Host", f"{self.record.node}:{self.record.port}"),
                    ("Authorization", f"token {self.record.secret}"),
                    ("X-Forwarded-Proto", self.request.protocol)]
        if self.websocket():
            headers += [("Connection", "Upgrade"), ("Upgrade", "websocket")]
        elif "Content-Length" in self.request.headers:
            headers.append(("Content-Length", self.request.headers["Content-Length"]))
        elif self.request.headers.get("Transfer-Encoding", "").lower() == "chunked":
            headers.append(("Transfer-Encoding", "chunked"))
        return headers

    async def send_upstream(self, event) -> None:
        data = self.h11conn.send(event)
        if data:
            self.tunnel.writer.write(data)
            await asyncio.wait_for(self.tunnel.writer.drain(),
                                   self.ctx.session_settings.proxy_response_timeout)

    async def data_received(self, chunk):
        if self.tunnel is None or self._finished:
            return
        try:
            await self.send_upstream(h11.Data(data=chunk))
        except Exception as exc:
            raise service_error(exc) from exc

    async def next_event(self, before_waiting=None):
        """The service's next h11 event, reading as needed (a deadline per read);
        `before_waiting` is awaited first whenever a read must wait for the service."""
        timeout = self.ctx.session_settings.proxy_response_timeout
        while True:
            event = self.h11conn.next_event()
            if event is not h11.NEED_DATA:
                return event
            if before_waiting is not None:
                await before_waiting()
            data = await asyncio.wait_for(self.tunnel.reader.read(CHUNK), timeout)
            self.h11conn.receive_data(data)

    async def forward(self, session_id=None, rest=None):
        try:
            response = await self.response_head()
            while isinstance(response, h11.InformationalResponse) and \
                    response.status_code != 101:
                response = await self.next_event()
        except E.APIError:
            raise
        except h11.RemoteProtocolError as exc:
            raise BadGateway(f"the session's service answered with broken HTTP: {exc}") \
                from exc
        except Exception as exc:
            raise service_error(exc) from exc
        self.copy_head(response)
        if response.status_code == 101:
            return await self.splice()
        await self.copy_body()

    get = head = post = delete = patch = put = options = forward

    def copy_head(self, response) -> None:
        self.clear_header("Content-Type")
        self.clear_header("Cache-Control")
        self.set_status(response.status_code, response.reason.decode("latin-1") or None)
        for name, value in response.headers:
            key = name.decode("latin-1")
            if key.lower() not in FROM_SERVICE_DROPPED:
                self.add_header(key, value.decode("latin-1"))
        if response.status_code == 101:  # hop-by-hop, but the upgrade's own
            self.set_header("Upgrade", "websocket")
            self.set_header("Connection", "Upgrade")

    async def copy_body(self) -> None:
        """The body as it comes: what arrived is sent on before the proxy waits for more
        (a body that came whole leaves in one write, with its length); a service that breaks
        off mid-body closes the caller's connection (no error answer is possible then)."""
        try:
            while True:
                event = await self.next_event(before_waiting=self.flush_written)
                if isinstance(event, h11.Data):
                    self.write(bytes(event.data))
                elif isinstance(event, (h11.EndOfMessage, h11.ConnectionClosed)):
                    break
        except iostream.StreamClosedError:
            return  # the caller went away: on_connection_close closed the tunnel
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.warning("session %s: the service's body broke off: %s", self.record.id, exc)
            self.request.connection.stream.close()
            return
        if self.h11conn.our_state is h11.DONE and self.h11conn.their_state is h11.DONE:
            IDLE.give(self.record.id, self.tunnel)  # reusable: the next request's
            self.tunnel = None
        self.finish()

    async def flush_written(self) -> None:
        if self._write_buffer:
            await self.flush()

    async def splice(self) -> None:
        """After the service's 101: the 101 to the caller, then bytes both ways until
        either side closes."""
        leftover = self.h11conn.trailing_data[0]
        tunnel, self.tunnel = self.tunnel, None  # the splice owns it now
        self.set_status(101)
        self.finish()
        stream = self.detach()
        if leftover:
            await stream.write(leftover)
        conf, store, sid = self.ctx.session_settings, self.ctx.store, self.record.id

        async def caller_to_service():
            while True:
                data = await stream.read_bytes(CHUNK, partial=True)
                ACTIVITY.seen(store, sid, conf.activity_write_seconds)
                tunnel.writer.write(data)
                await tunnel.writer.drain()

        async def service_to_caller():
            while True:
                data = await tunnel.reader.read(CHUNK)
                if not data:
                    return
                ACTIVITY.seen(store, sid, conf.activity_write_seconds)
                await stream.write(data)

        tasks = [asyncio.ensure_future(caller_to_service()),
                 asyncio.ensure_future(service_to_caller())]
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            tunnel.close()
            stream.close()

    def on_finish(self):
        if self.tunnel is not None:
            self.tunnel.close()
            self.tunnel = None

    def on_connection_close(self):
        self.on_finish()
