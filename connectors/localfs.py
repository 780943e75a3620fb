"""This machine's side of a tree copy (copy.py): a `LocalSource` that lstats and opens
only regular files (O_NOFOLLOW, checked again once open), and a `LocalSink` that writes
only under its root, never through a link, with exactly the mode it is given.

The source's errors are the copied files' own (errors.classify: a JobFileError naming the
path). The sink's are this host's (a full disk: OSError, so a stage-out waits) unless it
stands for the HPC (LocalTransport: classified as the HPC's are).
"""
from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import stat

from hpcbridge.archive import inside

from .copy import NOT_REGULAR, Entry
from .errors import JobFileError, classify


class _Local:
    """`inline`: call the file system directly, for a copy run in a thread of its own
    (LocalTransport: one thread per copy, not one per call); else each call in a thread,
    so the event loop (an SFTP copy's) is never blocked."""

    def __init__(self, inline: bool = False):
        self.inline = inline

    async def _do(self, fn, *args):
        return fn(*args) if self.inline else await asyncio.to_thread(fn, *args)

    async def _job_call(self, fn, *args, path: str | None = None):
        """A read of the copied files: their errors are theirs (JobFileError naming it)."""
        try:
            return await self._do(fn, *args)
        except OSError as exc:
            raise classify(exc, path=path or (args[0] if args else "")) from exc


class LocalSource(_Local):
    async def lstat(self, path: str) -> Entry:
        st = await self._job_call(os.lstat, path)
        return Entry.of(st.st_mode, st.st_size)

    async def scandir(self, path: str) -> list[tuple[str, Entry]]:
        def scan():
            out = []
            with os.scandir(path) as it:
                for e in it:
                    st = e.stat(follow_symlinks=False)
                    out.append((e.name, Entry.of(st.st_mode, st.st_size)))
            return out
        return await self._job_call(scan, path=path)

    async def open(self, path: str) -> LocalReader:
        def open_regular() -> int:
            # O_NONBLOCK: a file swapped for a named pipe since its lstat opens at once
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                os.close(fd)
                raise JobFileError(path, NOT_REGULAR)
            return fd
        return LocalReader(await self._job_call(open_regular, path=path), path, self)


class LocalReader:
    def __init__(self, fd: int, path: str, source: LocalSource):
        self.fd, self.path, self.source = fd, path, source

    async def read(self, size: int) -> bytes:
        return await self.source._job_call(os.read, self.fd, size, path=self.path)

    async def close(self) -> None:
        with contextlib.suppress(OSError):
            os.close(self.fd)


class LocalSink(_Local):
    """Writes under `root` only. `for_hpc`: this folder stands for the HPC (LocalTransport),
    so its errors are classified like the HPC's."""

    def __init__(self, root: str, for_hpc: bool = False, inline: bool = False):
        super().__init__(inline)
        self.root, self.for_hpc = root, for_hpc

    async def _call(self, fn, path: str):
        # the folder it goes into, links resolved, stays in root (only a link planted in
        # the destination could lead out); a link at `path` itself is replaced, not followed
        if path != self.root and not inside(self.root, os.path.dirname(path)):
            raise JobFileError(path, "leads outside the folder it is copied into: refused")
        try:
            return await self._do(fn)
        except OSError as exc:
            if self.for_hpc:
                raise classify(exc, path=path) from exc
            if exc.errno == errno.ENAMETOOLONG:  # the job's names, not this host's fault
                raise JobFileError(path, "a name or path is too long to be stored") from exc
            raise

    async def mkdir(self, path: str) -> None:
        await self._call(lambda: make_private_dir(path), path)

    async def create(self, path: str, mode: int) -> LocalWriter:
        return LocalWriter(await self._call(lambda: create_private(path, mode), path), path,
                           self)

    async def discard(self, path: str) -> None:
        with contextlib.suppress(OSError):
            await self._do(os.unlink, path)


class LocalWriter:
    def __init__(self, fd: int, path: str, sink: LocalSink):
        self.fd, self.path, self.sink = fd, path, sink

    async def write(self, data: bytes) -> None:
        def write_all():
            view = memoryview(data)
            while view:
                view = view[os.write(self.fd, view):]
        await self.sink._call(write_all, self.path)

    async def close(self) -> None:
        fd, self.fd = self.fd, -1
        if fd >= 0:
            await self.sink._call(lambda: os.close(fd), self.path)


def make_private_dir(path: str, mode: int = 0o700) -> None:
    """A folder at `path` with exactly `mode`; a file or link in the way is removed (never
    followed); an existing folder is kept, its mode set."""
    try:
        os.mkdir(path, mode)
    except FileExistsError:
        if not stat.S_ISDIR(os.lstat(path).st_mode):
            os.unlink(path)
            os.mkdir(path, mode)
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        os.fchmod(fd, mode)  # exactly: umask may have taken bits, and it existed maybe
    finally:
        os.close(fd)


def make_private_dirs(path: str, mode: int = 0o700) -> None:
    """os.makedirs, with every folder it creates private (`mode`); existing ones kept."""
    if os.path.isdir(path):
        return
    parent = os.path.dirname(path)
    if parent and parent != path:
        make_private_dirs(parent, mode)
    with contextlib.suppress(FileExistsError):
        os.mkdir(path, mode)


def create_private(path: str, mode: int) -> int:
    """A new file at `path` opened for writing, with exactly `mode`: created exclusively
    (O_EXCL, O_NOFOLLOW), so a link in its place is replaced, never written through."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        fd = os.open(path, flags, mode & 0o777)
    except FileExistsError:
        if stat.S_ISDIR(os.lstat(path).st_mode):
            raise
        os.unlink(path)
        fd = os.open(path, flags, mode & 0o777)
    os.fchmod(fd, mode & 0o777)
    return fd

