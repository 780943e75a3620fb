"""What every handler of the extension shares: JSON error answers (codes from the one
registry, `hpcbridge.errors`), requests to the middleware with the user's token, and the
user's files confined to the server's root."""
from __future__ import annotations

import asyncio
import json

from jupyter_server.base.handlers import JupyterHandler
from jupyter_server.extension.handler import ExtensionHandlerMixin
from jupyter_server.utils import url_path_join
from tornado import httpclient, web
from tornado.simple_httpclient import HTTPStreamClosedError

from hpcbridge.archive import UnsafePath, confine
from hpcbridge.errors import ERROR_CODES, code_for_status, error_body

# the extension's own answer when the middleware cannot be reached (refused, no route);
# the registry's "unavailable" is the middleware's own 503
UNREACHABLE = "middleware_unreachable"
# tells the middleware under which path the browser reaches its API (through this
# extension): a session's service is then served under <prefix>/sessions/<id>/proxy/
PREFIX_HEADER = "X-HPCBridge-API-Prefix"


class ClientGone(Exception):
    """The browser went away: the upstream request is aborted, not left running."""


class BaseHandler(ExtensionHandlerMixin, JupyterHandler):
    def write_error(self, status_code, **kwargs):
        exc = kwargs.get("exc_info", (None, None, None))[1]
        message = getattr(exc, "log_message", None) or self._reason
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps(error_body(code_for_status(status_code), message)))

    def write_json_error(self, code: str, message: str, status: int | None = None):
        """Answer with an error of the registry (its status, unless given)."""
        if self._headers_written:
            # part of an answer went out already (an event stream or a download that the
            # middleware's side broke off, e.g. at request_timeout): an error appended now
            # would be read as body (an EventSource: as a message), and a clean end would
            # make a cut download look whole. Drop the connection (an EventSource reconnects).
            self.log.warning("hpcbridge: %s after the answer started: %s", code, message)
            self.request.connection.close()
            self._finished = True
            return
        self.set_status(status or ERROR_CODES[code].status)
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps(error_body(code, message)))

    def write_unreachable(self, error) -> None:
        self.write_json_error(UNREACHABLE, f"hpcbridge middleware unreachable at "
                                           f"{self.extensionapp.middleware_url}: {error}")

    def upstream(self, path: str, method: str = "GET", **kwargs) -> httpclient.HTTPRequest:
        app = self.extensionapp
        query = kwargs.pop("query", "")
        if not app.token:
            raise web.HTTPError(401, "no token for the middleware")
        return httpclient.HTTPRequest(
            f"{app.api_url}/{path}" + (f"?{query}" if query else ""), method=method,
            headers={"Authorization": f"token {app.token}",
                     "Content-Type": self.request.headers.get("Content-Type",
                                                              "application/json"),
                     PREFIX_HEADER: self.api_prefix},
            connect_timeout=app.connect_timeout, request_timeout=app.request_timeout,
            allow_nonstandard_methods=True, **kwargs)

    @property
    def api_prefix(self) -> str:
        """The path the browser reaches the middleware's /api/v1 under: <base>hpcbridge/api."""
        return url_path_join(self.base_url, "hpcbridge", "api")

    async def fetch(self, request) -> httpclient.HTTPResponse | None:
        """Send to the middleware; on failure answer the browser with a clear JSON error."""
        try:
            return await httpclient.AsyncHTTPClient().fetch(request, raise_error=False)
        except ClientGone:
            return None
        except (HTTPStreamClosedError, BrokenPipeError, ConnectionResetError) as exc:
            if request.body_producer is None:
                error = exc
            else:
                # The middleware refused a request body before reading it (a bad token, an
                # unknown route) and closed the connection: tornado's client never reads
                # the answer then. Ask again without a body to learn the real reason.
                probe = await self._probe()
                if isinstance(probe, httpclient.HTTPResponse):
                    if probe.code >= 400:
                        return probe
                    self.write_json_error("bad_gateway", "the hpcbridge middleware closed "
                                          "the connection while receiving the request body")
                    return None
                error = probe
        except (httpclient.HTTPClientError, asyncio.TimeoutError) as exc:
            self.write_json_error("bad_gateway", f"hpcbridge middleware: {exc}")
            return None
        except OSError as exc:  # refused, no route, name not known
            error = exc
        if isinstance(error, OSError):
            self.write_unreachable(error)
        else:
            self.write_json_error("bad_gateway", f"hpcbridge middleware: {error}")
        return None

    async def _probe(self) -> httpclient.HTTPResponse | Exception:
        """GET me with the same token: the middleware's answer, or why there was none."""
        try:
            return await httpclient.AsyncHTTPClient().fetch(self.upstream("me"),
                                                             raise_error=False)
        except Exception as exc:  # noqa: BLE001 — the probe only refines an error message
            return exc

    def relay_error(self, response, body: bytes | None = None) -> bool:
        """Answer the browser with the middleware's error, if `response` is one; `body`
        replaces a body that was streamed elsewhere."""
        if response.code == 599:  # tornado's "no response" (refused, timed out)
            self.write_unreachable(response.error)
            return True
        if response.code < 400:
            return False
        body = response.body if body is None else body
        try:
            json.loads(body or b"")
        except ValueError:  # e.g. the HTML page of a proxy
            body = json.dumps(error_body("bad_gateway",
                                         f"middleware answered {response.code}")).encode()
        self.set_status(response.code)
        self.set_header("Content-Type", "application/json")
        self.finish(body)
        return True

    def local_path(self, rel: str) -> str:
        """A path under the server's root dir (never outside it)."""
        root = self.settings.get("server_root_dir") or self.serverapp.root_dir
        try:
            return confine(root, rel)
        except UnsafePath:
            raise web.HTTPError(403, f"{rel} is outside the server's root") from None
