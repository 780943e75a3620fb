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

HOP_HEADERS = {"connection", "keep-alive", "transfer-encoding", "content-length",
               "content-encoding", "server", "date"}


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
        except (ConnectionError, OSError) as exc:
            self.write_json_error(503, "middleware_unreachable",
                                  f"hpcbridge middleware unreachable at "
                                  f"{self.extensionapp.middleware_url}: {exc}")
        except (httpclient.HTTPClientError, asyncio.TimeoutError) as exc:
            self.write_json_error(502, "bad_gateway", f"hpcbridge middleware: {exc}")
        return None

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
        await self._chunks.put(chunk)

    async def _produce(self, write):
        while (chunk := await self._chunks.get()) is not None:
            await write(chunk)

    def _on_header(self, line: str):
        if line.startswith("HTTP/"):
            self._status = int(line.split(" ", 2)[1])
        elif ":" in line and self._status < 400:
            name, value = line.split(":", 1)
            if name.strip().lower() not in HOP_HEADERS:
                self.set_header(name.strip(), value.strip())

    def _on_chunk(self, chunk: bytes):
        if self._status >= 400:
            self._error_body.append(chunk)
            return
        if not self._started:
            self.set_status(self._status)
            self._started = True
        self.write(chunk)
        asyncio.ensure_future(self._flush())  # server-sent events reach the browser at once

    async def _flush(self):
        try:
            await self.flush()
        except iostream.StreamClosedError:
            pass

    async def _relay(self):
        await self._chunks.put(None)
        response = await self._fetch
        if response is None or self._finished:
            return
        if response.code == 599 or response.code >= 400:
            response._body = b"".join(self._error_body)
            self.relay_error(response)
            return
        if not self._started:
            self.set_status(response.code)
        self.finish()

    def on_connection_close(self):
        if not self._fetch.done():
            self._fetch.cancel()

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
                await asyncio.get_running_loop().run_in_executor(None, _zip_folder, full, tmp)
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


def _zip_folder(folder: str, fileobj) -> None:
    with zipfile.ZipFile(fileobj, "w", zipfile.ZIP_DEFLATED) as zf:
        for dirpath, _, files in os.walk(folder):
            for name in files:
                path = os.path.join(dirpath, name)
                if not os.path.islink(path):
                    zf.write(path, os.path.relpath(path, folder))


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
