"""Forwarding handlers: the user's own Jupyter server speaks for the user.

Requests are authenticated by the Jupyter server itself (its auth and XSRF rules), then
sent to the middleware with the user's hub token. Bodies and downloads are streamed.
"""
from __future__ import annotations

import asyncio
import json
import os
import shutil
import tempfile
import zipfile

from jupyter_server.base.handlers import JupyterHandler
from jupyter_server.extension.handler import ExtensionHandlerMixin
from tornado import httpclient, iostream, web
from tornado.simple_httpclient import HTTPStreamClosedError

from hpcbridge.archive import zip_folder

HOP_HEADERS = {"connection", "keep-alive", "transfer-encoding", "content-length",
               "content-encoding", "server", "date"}


class _ClientGone(Exception):
    """The browser went away: the upstream request is aborted, not left running."""


_GONE = object()  # queued for a body producer when the browser went away


class BaseHandler(ExtensionHandlerMixin, JupyterHandler):
    def write_error(self, status_code, **kwargs):
        exc = kwargs.get("exc_info", (None, None, None))[1]
        message = getattr(exc, "log_message", None) or self._reason
        code = {401: "unauthorized", 403: "forbidden", 404: "not_found"}.get(
            status_code, "internal_error" if status_code >= 500 else "bad_request")
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps({"error": code, "message": message, "details": None}))

    def write_json_error(self, status: int, code: str, message: str):
        self.set_status(status)
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps({"error": code, "message": message, "details": None}))

    def upstream(self, path: str, method: str = "GET", **kwargs) -> httpclient.HTTPRequest:
        app = self.extensionapp
        query = kwargs.pop("query", "")
        if not app.token:
            raise web.HTTPError(401, "no token for the middleware")
        return httpclient.HTTPRequest(
            f"{app.api_url}/{path}" + (f"?{query}" if query else ""), method=method,
            headers={"Authorization": f"token {app.token}",
                     "Content-Type": self.request.headers.get("Content-Type",
                                                              "application/json")},
            connect_timeout=app.connect_timeout, request_timeout=app.request_timeout,
            allow_nonstandard_methods=True, **kwargs)

    async def fetch(self, request) -> httpclient.HTTPResponse | None:
        """Send to the middleware; on failure answer the browser with a clear JSON error."""
        try:
            return await httpclient.AsyncHTTPClient().fetch(request, raise_error=False)
        except _ClientGone:
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
                    self.write_json_error(502, "bad_gateway", "the hpcbridge middleware "
                                          "closed the connection while receiving the "
                                          "request body")
                    return None
                error = probe
        except (httpclient.HTTPClientError, asyncio.TimeoutError) as exc:
            self.write_json_error(502, "bad_gateway", f"hpcbridge middleware: {exc}")
            return None
        except OSError as exc:  # refused, no route, name not known
            error = exc
        if isinstance(error, OSError):
            self.write_json_error(503, "middleware_unreachable",
                                  f"hpcbridge middleware unreachable at "
                                  f"{self.extensionapp.middleware_url}: {error}")
        else:
            self.write_json_error(502, "bad_gateway", f"hpcbridge middleware: {error}")
        return None

    async def _probe(self) -> httpclient.HTTPResponse | Exception:
        """GET me with the same token: the middleware's answer, or why there was none."""
        try:
            return await httpclient.AsyncHTTPClient().fetch(self.upstream("me"),
                                                             raise_error=False)
        except Exception as exc:  # noqa: BLE001 — the probe only refines an error message
            return exc

    def relay_error(self, response) -> bool:
        if response.code == 599:  # tornado's "no response" (refused, timed out)
            self.write_json_error(503, "middleware_unreachable",
                                  f"hpcbridge middleware unreachable at "
                                  f"{self.extensionapp.middleware_url}: {response.error}")
            return True
        if response.code >= 400:
            self.set_status(response.code)
            self.set_header("Content-Type", "application/json")
            body = response.body or b""
            try:
                json.loads(body)
            except ValueError:
                body = json.dumps({"error": "bad_gateway", "details": None,
                                   "message": f"middleware answered {response.code}"}).encode()
            self.finish(body)
            return True
        return False

    def local_path(self, rel: str) -> str:
        """A path under the server's root dir (never outside it)."""
        root = os.path.realpath(self.settings.get("server_root_dir") or
                                self.serverapp.root_dir)
        full = os.path.realpath(os.path.join(root, rel.lstrip("/")))
        if full != root and not full.startswith(root + os.sep):
            raise web.HTTPError(403, f"{rel} is outside the server's root")
        return full


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
                raise _ClientGone()
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
            raise _ClientGone()
        if not self._started:
            self.set_status(self._status)
            self._started = True
        self.write(chunk)
        try:
            await self.flush()
        except iostream.StreamClosedError:
            self._gone = True
            raise _ClientGone() from None

    async def _relay(self):
        await self._send_chunk(None)
        response = await self._fetch
        if response is None or self._finished:
            return
        if response.code == 599 or response.code >= 400:
            if self._error_body:  # streamed to us; a probe's answer has its own body
                response._body = b"".join(self._error_body)
            self.relay_error(response)
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


class LocalUploadHandler(BaseHandler):
    """POST {path}: send a file or folder of the user's server (zipped) as an upload."""

    @web.authenticated
    async def post(self):
        try:
            rel = json.loads(self.request.body or b"{}").get("path", "")
        except (ValueError, AttributeError):
            return self.write_json_error(400, "bad_request", "body must be {\"path\": ...}")
        full = self.local_path(rel)
        if not rel or not os.path.exists(full):
            return self.write_json_error(404, "not_found", f"no file or folder {rel!r}")
        with tempfile.TemporaryFile() as tmp:
            if os.path.isdir(full):
                await asyncio.get_running_loop().run_in_executor(None, zip_folder, full, tmp)
                name = os.path.basename(full.rstrip("/")) + ".zip"
            else:
                with open(full, "rb") as src:
                    shutil.copyfileobj(src, tmp)
                name = os.path.basename(full)
            tmp.seek(0)

            async def produce(write):
                while chunk := tmp.read(1 << 20):
                    await write(chunk)
            request = self.upstream("uploads", "POST", query=f"name={_quote(name)}",
                                    body_producer=produce)
            request.headers["Content-Type"] = "application/octet-stream"
            response = await self.fetch(request)
        if response is None or self.relay_error(response):
            return
        self.set_status(response.code)
        self.set_header("Content-Type", "application/json")
        self.finish(response.body)


class LocalDownloadHandler(BaseHandler):
    """POST {job_id}: fetch a job's results into <root>/hpcbridge-results/<job id>."""

    @web.authenticated
    async def post(self):
        try:
            job_id = str(json.loads(self.request.body or b"{}").get("job_id", ""))
        except (ValueError, AttributeError):
            return self.write_json_error(400, "bad_request", "body must be {\"job_id\": ...}")
        if not job_id.isalnum():
            return self.write_json_error(422, "validation_error", "job_id is invalid")
        rel = f"{self.extensionapp.results_dir}/{job_id}"
        dest = self.local_path(rel)
        with tempfile.TemporaryFile() as tmp:
            def save(chunk: bytes) -> None:  # tornado awaits a callback's return value
                tmp.write(chunk)
            request = self.upstream(f"jobs/{job_id}/results/", "GET", streaming_callback=save)
            response = await self.fetch(request)
            if response is None:
                return
            if response.code >= 400 or response.code == 599:
                tmp.seek(0)
                response._body = tmp.read()
                self.relay_error(response)
                return
            tmp.seek(0)
            await asyncio.get_running_loop().run_in_executor(None, _unzip, tmp, dest)
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps({"path": rel}))


def _quote(value: str) -> str:
    from urllib.parse import quote
    return quote(value, safe="")


def _unzip(fileobj, dest: str) -> None:
    os.makedirs(dest, exist_ok=True)
    root = os.path.realpath(dest)
    with zipfile.ZipFile(fileobj) as zf:
        for member in zf.infolist():
            target = os.path.realpath(os.path.join(root, member.filename))
            if not target.startswith(root + os.sep):
                continue  # never write outside dest
            if member.is_dir():
                os.makedirs(target, exist_ok=True)
                continue
            os.makedirs(os.path.dirname(target), exist_ok=True)
            with zf.open(member) as src, open(target, "wb") as out:
                shutil.copyfileobj(src, out)
