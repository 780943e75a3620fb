"""The user's own files: send a file or folder of the Jupyter server as an upload, and bring
a job's results into it. Paths stay under the server's root; folders are zipped and results
unpacked by the one archive module (`hpcbridge.archive`)."""
from __future__ import annotations

import asyncio
import json
import os
import shutil
import tempfile
from urllib.parse import quote

from tornado import web

from hpcbridge.archive import ArchiveError, extract, zip_folder

from .base import BaseHandler


def pack(full: str, tmp) -> str:
    """Write the file, or the folder zipped, at `full` into tmp; the upload's name."""
    if os.path.isdir(full):
        zip_folder(full, tmp)
        return os.path.basename(full.rstrip("/")) + ".zip"
    with open(full, "rb") as src:
        shutil.copyfileobj(src, tmp)
    return os.path.basename(full)


class LocalUploadHandler(BaseHandler):
    """POST {path}: send a file or folder of the user's server (zipped) as an upload."""

    @web.authenticated
    async def post(self):
        try:
            rel = json.loads(self.request.body or b"{}").get("path", "")
        except (ValueError, AttributeError):
            return self.write_json_error("bad_request", "body must be {\"path\": ...}")
        full = self.local_path(rel)
        if not rel or not os.path.exists(full):
            return self.write_json_error("not_found", f"no file or folder {rel!r}")
        with tempfile.TemporaryFile() as tmp:
            name = await asyncio.get_running_loop().run_in_executor(None, pack, full, tmp)
            tmp.seek(0)

            async def produce(write):
                while chunk := tmp.read(1 << 20):
                    await write(chunk)
            request = self.upstream("uploads", "POST", query=f"name={quote(name, safe='')}",
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
            return self.write_json_error("bad_request", "body must be {\"job_id\": ...}")
        if not job_id.isalnum():
            return self.write_json_error("validation_error", "job_id is invalid")
        rel = f"{self.extensionapp.results_dir}/{job_id}"
        dest = self.local_path(rel)
        with tempfile.TemporaryFile() as tmp:
            def save(chunk: bytes) -> None:  # tornado awaits a callback's return value
                tmp.write(chunk)
            request = self.upstream(f"jobs/{job_id}/results/", "GET", streaming_callback=save)
            response = await self.fetch(request)
            if response is None:
                return
            tmp.seek(0)
            if self.relay_error(response, tmp.read() if response.code >= 400 else None):
                return
            try:  # a member that would land outside dest refuses the whole archive
                await asyncio.get_running_loop().run_in_executor(None, extract, tmp, dest)
            except ArchiveError as exc:
                return self.write_json_error("bad_gateway", f"refusing the results of job "
                                             f"{job_id} from the middleware: {exc}")
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps({"path": rel}))
