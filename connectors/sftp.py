"""The transport's file methods over SFTP, for `ConnectorPool`: every path confined under
the HPC's work root, which is resolved (`~` expanded, created) once on first use."""
from __future__ import annotations

import contextlib
import os
import posixpath
import stat

import asyncssh

from .transport import RemoteEntry, Transport, confine


class SFTPFiles(Transport):
    """File methods on top of `self.sftp()`, an async context manager that lends an SFTP
    client (the pool's channel slots bound it) and of `self.config` (an HPCConfig)."""

    _work_root_resolved = False

    async def resolve_work_root(self) -> str:
        if not self._work_root_resolved:
            async with self.sftp() as sftp:
                root = self.config.work_root
                if root.startswith("~"):
                    root = root[1:].lstrip("/") or "."
                await sftp.makedirs(root, exist_ok=True)
                self.work_root = await sftp.realpath(root)
            self._work_root_resolved = True
        return self.work_root

    async def _path(self, path: str) -> str:
        return confine(await self.resolve_work_root(), path)

    async def makedirs(self, path):
        full = await self._path(path)
        async with self.sftp() as sftp:
            await sftp.makedirs(full, exist_ok=True)
        return full

    async def write_bytes(self, path, data, mode=0o644):
        full = await self._path(path)
        async with self.sftp() as sftp:
            await sftp.makedirs(posixpath.dirname(full), exist_ok=True)
            async with sftp.open(full, "wb") as f:
                await f.write(data)
            await sftp.chmod(full, mode)

    async def upload(self, local, remote):
        full = await self._path(remote)
        async with self.sftp() as sftp:
            if os.path.isdir(local):
                await sftp.makedirs(full, exist_ok=True)
                await sftp.put([os.path.join(local, n) for n in os.listdir(local)], full,
                               recurse=True, preserve=True, follow_symlinks=False)
            else:
                await sftp.makedirs(posixpath.dirname(full), exist_ok=True)
                await sftp.put(local, full, preserve=True)

    async def download(self, remote, local):
        full = await self._path(remote)
        async with self.sftp() as sftp:
            if await sftp.isdir(full):
                os.makedirs(local, exist_ok=True)
                names = [n for n in await sftp.listdir(full) if n not in (".", "..")]
                if names:
                    await sftp.get([posixpath.join(full, n) for n in names], local,
                                   recurse=True, preserve=True)
            else:
                os.makedirs(os.path.dirname(local) or ".", exist_ok=True)
                await sftp.get(full, local, preserve=True)

    async def listdir(self, path):
        full = await self._path(path)
        entries: list[RemoteEntry] = []
        async with self.sftp() as sftp:
            async def walk(folder, prefix):
                for entry in await sftp.readdir(folder):
                    if entry.filename in (".", ".."):
                        continue
                    rel = posixpath.join(prefix, entry.filename) if prefix else entry.filename
                    is_dir = stat.S_ISDIR(entry.attrs.permissions or 0)
                    entries.append(RemoteEntry(rel, 0 if is_dir else entry.attrs.size or 0,
                                               is_dir))
                    if is_dir:
                        await walk(posixpath.join(folder, entry.filename), rel)
            await walk(full, "")
        return sorted(entries, key=lambda e: e.path)

    async def read_range(self, path, offset, max_bytes):
        return (await self.read_ranges([(path, offset, max_bytes)]))[0]

    async def read_ranges(self, requests):
        """All reads through one SFTP channel: one round of log tails per HPC."""
        paths = [await self._path(p) for p, _, _ in requests]
        out = []
        async with self.sftp() as sftp:
            for full, (_, offset, max_bytes) in zip(paths, requests):
                try:
                    async with sftp.open(full, "rb") as f:
                        await f.seek(offset)
                        out.append(await f.read(max_bytes))
                except asyncssh.SFTPNoSuchFile:
                    out.append(b"")
        return out

    async def rmtree(self, path):
        full = await self._path(path)
        if full == self.work_root:
            raise ValueError("refusing to remove the work root itself")
        async with self.sftp() as sftp:
            with contextlib.suppress(asyncssh.SFTPNoSuchFile):
                await sftp.rmtree(full)
