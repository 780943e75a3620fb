"""Uploads: an archive (or one file with ?name=) streamed to disk, then unpacked safely
(hpcbridge.archive) into the upload's own folder."""
from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
import uuid

from tornado import web

from hpcbridge import schemas as S
from hpcbridge.archive import ArchiveError, ArchiveTooLarge, extract

from .. import errors as E
from .base import APIHandler

# a chunked upload past the limit is read and thrown away up to this much more, so that the
# client, still sending, reads a 413 instead of a reset; past that the 413 is sent at once
# and the connection closed
UPLOAD_DISCARD_SLACK = 4 << 20
ARCHIVE_SUFFIXES = (".zip", ".tar", ".tar.gz", ".tgz")


def unpack(archive: str, dest: str, max_bytes: int) -> int:
    """Extract an uploaded archive; its bytes. Bad archives are 422, too large ones 413."""
    try:
        return extract(archive, dest, max_bytes=max_bytes)
    except ArchiveTooLarge:
        raise E.PayloadTooLarge("the unpacked upload is too large") from None
    except ArchiveError as exc:
        # damaged, not an archive (a single file needs ?name=), or a member not allowed
        raise E.ValidationFailed(f"upload refused: {exc}") from None


def single_file_name(name: str) -> str:
    """The name a single uploaded file is stored under: its last path part."""
    safe = os.path.basename(name.replace("\\", "/"))
    if safe in ("", ".", ".."):
        raise E.ValidationFailed("invalid file name", [{"loc": ["query", "name"],
                                                        "msg": "invalid"}])
    return safe


@web.stream_request_body
class UploadHandler(APIHandler):
    """POST a zip/tar archive (or one file with ?name=) as the raw body, streamed to disk."""

    _tmp = None
    _body_read = False

    async def prepare(self):
        await super().prepare()
        limit = self.ctx.max_upload_bytes
        length = self.request.headers.get("Content-Length")
        if length is not None and length.isdigit() and int(length) > limit:
            raise E.PayloadTooLarge(f"upload larger than the limit of {limit} bytes")
        # tornado answers a bare 400 past its own bound (for chunked bodies even before
        # the data arrives): lift it, data_received enforces ours in pieces of <= 64 KiB
        self.request.connection.set_max_body_size(1 << 62)
        os.makedirs(self.ctx.site.uploads_dir, exist_ok=True)
        self._tmp = tempfile.NamedTemporaryFile(dir=self.ctx.site.uploads_dir,
                                                prefix=".incoming-", delete=False)
        self._size = 0
        self._too_large = False

    def data_received(self, chunk):
        if self._finished:
            return
        self._size += len(chunk)
        limit = self.ctx.max_upload_bytes
        if self._size > limit:
            if not self._too_large:
                self._too_large = True
                self._discard()  # nothing of it stays on disk
            if self._size > limit + UPLOAD_DISCARD_SLACK:
                # answer now; tornado closes the connection after the response
                self.send_error(413, exc_info=(None, E.PayloadTooLarge(
                    f"upload larger than the limit of {limit} bytes"), None))
            return
        self._tmp.write(chunk)

    def _discard(self):
        tmp, self._tmp = self._tmp, None
        if tmp is not None:
            tmp.close()
            try:
                os.unlink(tmp.name)
            except FileNotFoundError:
                pass

    def on_finish(self):
        self._discard()

    def on_connection_close(self):
        self._discard()

    def write_error(self, status_code, **kwargs):
        if not self._body_read:
            # answered before the body was read: tornado closes the connection after this
            # response, and a client must not send its next request on it
            self.set_header("Connection", "close")
        super().write_error(status_code, **kwargs)

    async def post(self):
        self._body_read = True
        try:
            upload = await self._receive()
        finally:
            self._discard()  # before the answer goes out, not after
        self.send(S.UploadInfo(id=upload.id, name=upload.name, size=upload.size), 201)

    async def _receive(self):
        limit = self.ctx.max_upload_bytes
        if self._too_large:
            raise E.PayloadTooLarge(f"upload larger than the limit of {limit} bytes")
        self._tmp.close()
        if self._size == 0:
            raise E.ValidationFailed("the upload is empty", [{"loc": ["body"], "msg": "empty"}])
        upload_id = uuid.uuid4().hex
        dest = os.path.join(self.ctx.site.uploads_dir, upload_id)
        name = self.get_query_argument("name", "")
        if "\0" in name or len(name.encode()) > 255:
            raise E.ValidationFailed("invalid file name: NUL or longer than 255 bytes",
                                     [{"loc": ["query", "name"], "msg": "invalid"}])
        try:
            if name and not name.endswith(ARCHIVE_SUFFIXES):
                safe = single_file_name(name)
                os.makedirs(dest)
                shutil.move(self._tmp.name, os.path.join(dest, safe))
                size = self._size
            else:
                size = await asyncio.get_running_loop().run_in_executor(
                    None, unpack, self._tmp.name, dest, limit * 4)
        except BaseException:
            shutil.rmtree(dest, ignore_errors=True)
            raise
        return self.ctx.store.add_upload(id=upload_id, user=self.user.name,
                                         name=name or upload_id, path=dest, size=size)
