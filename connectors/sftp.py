"""The transport's file methods over SFTP, for `ConnectorPool`: every path confined under
the HPC's work root, which is resolved (`~` expanded, created) once on first use.

Every SFTP call has a deadline (HPCConfig.sftp_timeout; a transfer: each 4 MiB chunk),
as SFTP calls take none of their own. A job's files are only opened when they are regular
files (lstat first): opening a named pipe blocks until a writer appears. Uploads and
downloads are copy.py's one-way tree copies (docs/security.md); what this module creates
on the HPC is private (folders 0700, files 0600 unless a mode is given).
"""
from __future__ import annotations

import contextlib
import contextvars
import os
import posixpath
import stat

import asyncssh

from .copy import NOT_REGULAR, UPLOAD, CopyLimits, copy_tree, download_policy
from .deadline import within
from .errors import JobFileError, RemoteFileNotFound, RemoteTimeout, classify
from .localfs import LocalSink, LocalSource
from .sftpfs import SFTPSink, SFTPSource
from .transport import RemoteEntry, Transport, confine

PRIVATE_DIR = asyncssh.SFTPAttrs(permissions=0o700)  # folders it creates on the HPC
# (transport, client) lent by `shared_channel` to every file call of the task (and of the
# tasks it starts) instead of a channel each: many calls pipelined on one SFTP channel
_SHARED: contextvars.ContextVar[tuple | None] = contextvars.ContextVar(
    "hpcbridge_sftp_shared", default=None)


def _regular(attrs) -> bool:
    return stat.S_ISREG(attrs.permissions or 0)


def _is_dir(attrs) -> bool:
    return stat.S_ISDIR(attrs.permissions or 0)


class SFTPFiles(Transport):
    """File methods on top of `self.sftp()`, an async context manager that lends an SFTP
    client (the pool's channel slots bound it) and of `self.config` (an HPCConfig)."""

    _work_root_resolved = False

    @contextlib.asynccontextmanager
    async def shared_channel(self):
        """`async with pool.shared_channel():` — every file call made inside (also from
        tasks started inside: asyncio.gather) goes over one SFTP channel, its requests
        pipelined, instead of opening a channel of its own (a batch of stagings)."""
        async with self.sftp() as client:
            token = _SHARED.set((self, client, set()))  # + the folders known to exist
            try:
                yield client
            finally:
                _SHARED.reset(token)

    @contextlib.asynccontextmanager
    async def _channel(self):
        shared = _SHARED.get()
        if shared is not None and shared[0] is self:
            try:
                yield shared[1]
            except asyncssh.Error as exc:  # one call's error, not the shared channel's
                raise classify(exc, f"{self.config.id}: sftp") from exc
            return
        async with self.sftp() as client:
            yield client

    async def _makedirs(self, sftp, full: str) -> None:
        """`full` and its missing parents (private, 0700): one mkdir per folder below the
        work root not known to exist. Known: the work root, and within a shared channel
        every folder it made or found (a batch creates each user's folder once)."""
        shared = _SHARED.get()
        known = shared[2] if shared is not None and shared[0] is self else set()
        rel = posixpath.relpath(full, self.work_root)
        if rel == "." or full in known:
            return
        if rel.startswith(".."):  # not below the work root: as asyncssh does it
            await self._op(sftp.makedirs(full, attrs=PRIVATE_DIR, exist_ok=True), "makedirs")
            return
        current = self.work_root
        for part in rel.split("/"):
            current = posixpath.join(current, part)
            if current in known:
                continue
            try:
                await self._op(sftp.mkdir(current, PRIVATE_DIR), f"mkdir {current}")
            except asyncssh.SFTPError:  # there already (or not makeable: stat says which)
                try:
                    attrs = await self._op(sftp.stat(current), f"stat {current}")
                except asyncssh.SFTPError as exc:
                    raise classify(exc, f"{self.config.id}: sftp", current) from exc
                if not _is_dir(attrs):
                    raise classify(asyncssh.SFTPFailure("exists and is not a folder"),
                                   f"{self.config.id}: sftp", current) from None
            known.add(current)

    async def _op(self, aw, what: str):
        """One SFTP call within HPCConfig.sftp_timeout."""
        return await within(aw, self.config.sftp_timeout, f"{self.config.id}: sftp {what}")

    async def resolve_work_root(self) -> str:
        if not self._work_root_resolved:
            async with self._channel() as sftp:
                root = self.config.work_root
                if root.startswith("~"):
                    root = root[1:].lstrip("/") or "."
                await self._op(sftp.makedirs(root, attrs=PRIVATE_DIR, exist_ok=True),
                               "makedirs")
                self.work_root = await self._op(sftp.realpath(root), "realpath")
            self._work_root_resolved = True
        return self.work_root

    async def _path(self, path: str) -> str:
        return confine(await self.resolve_work_root(), path)

    @property
    def limits(self) -> CopyLimits:
        return CopyLimits.of(self.config)

    async def makedirs(self, path):
        full = await self._path(path)
        async with self._channel() as sftp:  # each folder it creates private (0700)
            await self._makedirs(sftp, full)
        return full

    async def write_bytes(self, path, data, mode=0o600):
        full = await self._path(path)
        async with self._channel() as sftp:
            await self._makedirs(sftp, posixpath.dirname(full))
            writer = await SFTPSink(self, sftp).create(full, mode)
            try:
                await writer.write(data)
            finally:
                await writer.close()

    async def upload(self, local, remote):
        """Stage-in (copy.py's rules): links and special files refused, 0700/0600."""
        full = await self._path(remote)
        async with self._channel() as sftp:
            await self._makedirs(sftp, posixpath.dirname(full))
            return await copy_tree(LocalSource(), local, SFTPSink(self, sftp), full, UPLOAD)

    async def download(self, remote, local, report=None):
        """Stage-out (copy.py's rules): regular files and folders only (links and special
        files skipped into the report), 0700/0600 here, within the HPC's per-job limits."""
        full = await self._path(remote)
        os.makedirs(os.path.dirname(os.path.abspath(local)), exist_ok=True)
        async with self._channel() as sftp:
            return await copy_tree(SFTPSource(self, sftp), full,
                                   LocalSink(os.path.abspath(local)), os.path.abspath(local),
                                   download_policy(self.limits), report)

    async def _lstat(self, sftp, full: str):
        try:
            return await self._op(sftp.lstat(full), f"lstat {full}")
        except asyncssh.SFTPError as exc:
            raise classify(exc, f"{self.config.id}: sftp", full) from exc

    async def listdir(self, path):
        full = await self._path(path)
        entries: list[RemoteEntry] = []
        async with self._channel() as sftp:
            async def walk(folder, prefix):
                for entry in await self._op(sftp.readdir(folder), f"readdir {folder}"):
                    if entry.filename in (".", ".."):
                        continue
                    rel = posixpath.join(prefix, entry.filename) if prefix else entry.filename
                    is_dir = _is_dir(entry.attrs)
                    entries.append(RemoteEntry(rel, 0 if is_dir else entry.attrs.size or 0,
                                               is_dir))
                    if is_dir:
                        await walk(posixpath.join(folder, entry.filename), rel)
            await walk(full, "")
        return sorted(entries, key=lambda e: e.path)

    async def read_range(self, path, offset, max_bytes):
        data = (await self.read_ranges([(path, offset, max_bytes)]))[0]
        if isinstance(data, JobFileError):
            raise data
        return data

    async def read_ranges(self, requests):
        """All reads through one SFTP channel: one round of log tails per HPC. A file that
        cannot be read is reported in its place (a JobFileError); the others are read."""
        paths = [await self._path(p) for p, _, _ in requests]
        out: list[bytes | JobFileError] = []
        async with self._channel() as sftp:
            for full, (_, offset, max_bytes) in zip(paths, requests):
                try:
                    out.append(await self._read(sftp, full, offset, max_bytes))
                except RemoteFileNotFound:
                    out.append(b"")
                except JobFileError as exc:
                    out.append(exc)
        return out

    async def _read(self, sftp, full: str, offset: int, max_bytes: int) -> bytes:
        if not _regular(await self._lstat(sftp, full)):
            raise JobFileError(full, NOT_REGULAR)
        try:
            f = await self._open_for_read(sftp, full)
            await f.seek(offset)  # local: sets the offset of the next read
            data = await self._op(f.read(max_bytes), f"read {full}")
            await self._op(f.close(), f"close {full}")
        except asyncssh.SFTPError as exc:  # an open handle goes with the channel
            raise classify(exc, f"{self.config.id}: sftp", full) from exc
        return data

    async def _open_for_read(self, sftp, full: str):
        """Open a file lstat found regular. Should it have been swapped for a named pipe
        since, the server's open waits for a writer: after the deadline one is given (only
        to a pipe), or the server-side session would wait for good."""
        try:
            return await self._op(sftp.open(full, "rb"), f"open {full}")
        except RemoteTimeout:
            with contextlib.suppress(Exception):
                await self.run(["timeout", "5", "sh", "-c", '[ -p "$1" ] && exec 3>"$1"',
                                "sh", full], timeout=10)
            raise

    async def rmtree(self, path):
        full = await self._path(path)
        if full == self.work_root:
            raise ValueError("refusing to remove the work root itself")
        async with self._channel() as sftp:
            try:
                await self._remove_tree(sftp, full)
            except asyncssh.SFTPNoSuchFile:
                pass

    async def _remove_tree(self, sftp, folder: str) -> None:
        """sftp.rmtree, one deadline per call (a large tree takes as long as it needs)."""
        for entry in await self._op(sftp.readdir(folder), f"readdir {folder}"):
            if entry.filename in (".", ".."):
                continue
            inner = posixpath.join(folder, entry.filename)
            if _is_dir(entry.attrs):
                await self._remove_tree(sftp, inner)
            else:
                await self._op(sftp.remove(inner), f"remove {inner}")
        await self._op(sftp.rmdir(folder), f"rmdir {folder}")
