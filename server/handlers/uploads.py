"""Uploads: an archive (or one file with ?name=) streamed to disk, then unpacked safely
(hpcbridge.archive) into the upload's own folder.

The route's body bound is raised only once the caller is known; each user has at most
ctx.upload_slots concurrent uploads and ctx.upload_quota_bytes stored (see
server/uploadstore.py for the expiry of uploads no job uses)."""
from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
import uuid

from hpcbridge import schemas as S
from hpcbridge.archive import ArchiveError, ArchiveTooLarge, extract
from hpcbridge.artifacts import INCOMING_PREFIX

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


class UploadHandler(APIHandler):
    """POST a zip/tar archive (or one file with ?name=) as the raw body, streamed to disk."""

    _tmp = None
    _slot: str | None = None

    async def prepare(self):
        await self.authenticate()  # before anything of the body is read or kept
        ctx = self.ctx
        limit = ctx.max_upload_bytes
        self.refuse_larger_than(limit, "upload")
        self._room = ctx.upload_quota_bytes - ctx.store.upload_usage(self.user.name)
        length = self.request.headers.get("Content-Length", "")
        if length.isdigit() and int(length) > self._room:
            raise self.over_quota()
        ctx.upload_slots.take(self.user.name)
        self._slot = self.user.name
        # tornado answers a bare 400 past its own bound (for chunked bodies even before
        # the data arrives): lift it, data_received enforces ours in pieces of <= 64 KiB
        self.request.connection.set_max_body_size(1 << 62)
        self.request.connection.set_body_timeout(ctx.upload_body_timeout)
        self._tmp = tempfile.NamedTemporaryFile(dir=ctx.site.artifacts.scratch("uploads"),
                                                prefix=INCOMING_PREFIX, delete=False)
        self._size = 0
        self._refused = None

    def over_quota(self) -> E.APIError:
        return E.QuotaExceeded(
            f"uploads of {self.user.name} would pass their quota of "
            f"{self.ctx.upload_quota_bytes} bytes (room left: {max(self._room, 0)}); "
            "uploads no job uses expire, or ask an admin")

    def data_received(self, chunk):
        if self._finished:
            return
        self._size += len(chunk)
        limit = min(self.ctx.max_upload_bytes, self._room)
        if self._size > limit:
            if self._refused is None:
                self._refused = self.over_quota() if self._size > self._room else \
                    E.PayloadTooLarge(f"upload larger than the limit of "
                                      f"{self.ctx.max_upload_bytes} bytes")
                self._discard()  # nothing of it stays on disk
            if self._size > limit + UPLOAD_DISCARD_SLACK:
                # answer now; tornado closes the connection after the response
                self.send_error(413, exc_info=(None, self._refused, None))
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

    def _release(self):
        self._discard()
        if self._slot is not None:
            self.ctx.upload_slots.give(self._slot)
            self._slot = None

    def on_finish(self):
        self._release()

    def on_connection_close(self):
        self._release()
        super().on_connection_close()  # ends the wait for a body that will not come

    async def post(self):
        try:
            upload = await self._receive()
        finally:
            self._discard()  # before the answer goes out, not after
        self.send(S.UploadInfo(id=upload.id, name=upload.name, size=upload.size), 201)

    def _name(self) -> str:
        name = self.get_query_argument("name", "")
        if "\0" in name or len(name.encode()) > 255:
            raise E.ValidationFailed("invalid file name: NUL or longer than 255 bytes",
                                     [{"loc": ["query", "name"], "msg": "invalid"}])
        return name

    async def _unpack(self, dest: str) -> int:
        bound = self.ctx.max_upload_bytes * 4
        try:
            return await asyncio.get_running_loop().run_in_executor(
                None, unpack, self._tmp.name, dest, max(1, min(bound, self._room)))
        except E.PayloadTooLarge:
            if self._room < bound:  # the quota was the tighter bound
                raise self.over_quota() from None
            raise

    async def _receive(self):
        if self._refused is not None:
            raise self._refused
        self._tmp.close()
        if self._size == 0:
            raise E.ValidationFailed("the upload is empty", [{"loc": ["body"], "msg": "empty"}])
        upload_id = uuid.uuid4().hex
        artifacts = self.ctx.site.artifacts
        name = self._name()
        # the upload appears whole in the artifact store, or not at all
        with artifacts.writing("uploads", upload_id) as dest:
            if name and not name.endswith(ARCHIVE_SUFFIXES):
                safe = single_file_name(name)
                shutil.move(self._tmp.name, os.path.join(dest, safe))
                size = self._size
            else:
                size = await self._unpack(dest)
            # another upload of the same user may have finished meanwhile
            if size > self.ctx.upload_quota_bytes - \
                    self.ctx.store.upload_usage(self.user.name):
                raise self.over_quota()
        try:
            return self.ctx.store.add_upload(id=upload_id, user=self.user.name,
                                             name=name or upload_id,
                                             path=artifacts.path("uploads", upload_id),
                                             size=size)
        except BaseException:
            artifacts.delete("uploads", upload_id)
            raise
