"""An HPC's side of a tree copy (copy.py) over one SFTP client: `SFTPSource` (stage-out
reads: lstat, readdir's lstat attributes, open only what is regular and check it again
once open) and `SFTPSink` (stage-in writes: folders 0700, files created exclusively with
their mode, so a link in the way is replaced, never written through).

Every call has the HPC's SFTP deadline (SFTPFiles._op); an SFTP error leaves classified
(errors.classify) with the path it concerned.
"""
from __future__ import annotations

import contextlib

import asyncssh

from .copy import NOT_REGULAR, Entry
from .errors import JobFileError, classify


class _SFTPSide:
    def __init__(self, files, sftp):
        self.files, self.sftp = files, sftp  # files: the SFTPFiles the deadlines come from

    async def _call(self, aw, what: str, path: str):
        try:
            return await self.files._op(aw, f"{what} {path}")
        except asyncssh.SFTPError as exc:
            raise classify(exc, f"{self.files.config.id}: sftp", path) from exc

    async def _lstat(self, path: str) -> Entry | None:
        """lstat's answer, or None when nothing is there."""
        try:
            attrs = await self._call(self.sftp.lstat(path), "lstat", path)
        except FileNotFoundError:  # RemoteFileNotFound
            return None
        return Entry.of(attrs.permissions, attrs.size)


class SFTPSource(_SFTPSide):
    async def lstat(self, path: str) -> Entry:
        attrs = await self._call(self.sftp.lstat(path), "lstat", path)
        return Entry.of(attrs.permissions, attrs.size)

    async def scandir(self, path: str) -> list[tuple[str, Entry]]:
        names = await self._call(self.sftp.readdir(path), "readdir", path)
        # OpenSSH's readdir attributes are lstat's: a link is seen as a link
        return [(n.filename, Entry.of(n.attrs.permissions, n.attrs.size))
                for n in names if n.filename not in (".", "..")]

    async def open(self, path: str) -> SFTPReader:
        try:
            f = await self.files._open_for_read(self.sftp, path)
        except asyncssh.SFTPError as exc:
            raise classify(exc, f"{self.files.config.id}: sftp", path) from exc
        reader = SFTPReader(self, f, path)
        attrs = await self._call(f.stat(), "fstat", path)
        if Entry.of(attrs.permissions, attrs.size).kind != "regular file":
            await reader.close()  # swapped since its lstat
            raise JobFileError(path, NOT_REGULAR)
        return reader


class SFTPReader:
    def __init__(self, side: _SFTPSide, f, path: str):
        self.side, self.f, self.path = side, f, path

    async def read(self, size: int) -> bytes:
        return await self.side._call(self.f.read(size), "read", self.path)

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await self.side._call(self.f.close(), "close", self.path)


class SFTPSink(_SFTPSide):
    async def mkdir(self, path: str, mode: int = 0o700) -> None:
        """A folder with exactly `mode`; a file or link in the way is removed."""
        try:
            await self._call(self.sftp.mkdir(path, asyncssh.SFTPAttrs(permissions=mode)),
                             "mkdir", path)
        except JobFileError:
            found = await self._lstat(path)
            if found is None:
                raise
            if found.kind != "folder":
                await self._call(self.sftp.remove(path), "remove", path)
                await self._call(self.sftp.mkdir(path, asyncssh.SFTPAttrs(permissions=mode)),
                                 "mkdir", path)
        await self._call(self.sftp.chmod(path, mode, follow_symlinks=False), "chmod", path)

    async def create(self, path: str, mode: int) -> SFTPWriter:
        """A new file opened for writing, with exactly `mode` (exclusive create: a link in
        its place is removed first, never written through)."""
        attrs = asyncssh.SFTPAttrs(permissions=mode & 0o777)
        try:
            f = await self._call(self.sftp.open(path, "xb", attrs), "create", path)
        except JobFileError:
            found = await self._lstat(path)
            if found is None or found.kind == "folder":
                raise
            await self._call(self.sftp.remove(path), "remove", path)
            f = await self._call(self.sftp.open(path, "xb", attrs), "create", path)
        writer = SFTPWriter(self, f, path)
        try:
            await self._call(f.chmod(mode & 0o777), "chmod", path)  # the server's umask
        except BaseException:
            await writer.close()
            raise
        return writer

    async def discard(self, path: str) -> None:
        with contextlib.suppress(Exception):
            await self._call(self.sftp.remove(path), "remove", path)


class SFTPWriter:
    def __init__(self, side: _SFTPSide, f, path: str):
        self.side, self.f, self.path = side, f, path

    async def write(self, data: bytes) -> None:
        await self.side._call(self.f.write(data), "write", self.path)

    async def close(self) -> None:
        await self.side._call(self.f.close(), "close", self.path)
