"""What a scheduler handler needs from the machine it drives: commands and files.

`ConnectorPool` (pool.py) provides it over SSH; `LocalTransport` on this machine.
Paths given to the file methods are confined under the HPC's work root.
"""
from __future__ import annotations

import asyncio
import errno
import os
import shutil
import stat
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from hpcbridge.archive import UnsafePath, confine_remote

from .config import HPCConfig
from .copy import UPLOAD, CopyLimits, CopyReport, copy_tree, download_policy
from .errors import CommandFailed, JobFileError, PathOutsideWorkRoot, classify
from .localfs import LocalSink, LocalSource, make_private_dirs

# for a LocalTransport built without limits: HPCConfig's defaults
DEFAULT_LIMITS = CopyLimits(HPCConfig.model_fields["max_result_bytes"].default,
                            HPCConfig.model_fields["max_result_files"].default)


@dataclass(frozen=True)
class CommandResult:
    argv: tuple[str, ...]
    exit_status: int
    stdout: str
    stderr: str

    def check(self) -> CommandResult:
        if self.exit_status != 0:
            raise CommandFailed(self.argv, self.exit_status, self.stderr)
        return self


@dataclass(frozen=True)
class RemoteEntry:
    path: str  # relative to the folder that was listed
    size: int
    is_dir: bool


def confine(root: str, path: str) -> str:
    """`path` (absolute, or relative to root) as an absolute path inside the work root
    `root`: hpcbridge.archive's rule, raising the connectors' own error."""
    try:
        return confine_remote(root, path)
    except UnsafePath:
        raise PathOutsideWorkRoot(f"{path!r} is outside the work root {root!r}") from None


class CommandCounter:
    """Counts commands by program name, and calls hooks, so batching can be proven."""

    def __init__(self):
        self.counts: Counter[str] = Counter()
        self.hooks: list[Callable[[Sequence[str]], None]] = []

    def record(self, argv: Sequence[str]) -> None:
        self.counts[argv[0]] += 1
        for hook in self.hooks:
            hook(argv)

    @property
    def total(self) -> int:
        return sum(self.counts.values())


class Transport:
    """Interface shared by SSH and local transports."""

    work_root: str
    commands: CommandCounter
    limits: CopyLimits  # of a job's stage-out (HPCConfig.max_result_bytes/_files)

    async def run(self, argv: Sequence[str], stdin: str | None = None,
                  timeout: float | None = None) -> CommandResult:
        raise NotImplementedError

    async def resolve_work_root(self) -> str:
        raise NotImplementedError

    async def makedirs(self, path: str) -> str:
        raise NotImplementedError

    async def write_bytes(self, path: str, data: bytes, mode: int = 0o600) -> None:
        """A file with exactly `mode` (private by default); a link in its place is
        replaced, never written through."""
        raise NotImplementedError

    async def upload(self, local: str, remote: str) -> CopyReport:
        """Stage-in: copy a local file or folder tree to `remote` (created) by copy.py's
        rules: a link or special file anywhere refuses the copy (UnsafeSource), folders
        are made 0700, files 0600 (0700 if executable)."""
        raise NotImplementedError

    async def download(self, remote: str, local: str,
                       report: CopyReport | None = None) -> CopyReport:
        """Stage-out: copy a remote regular file or folder tree to `local` by copy.py's
        rules: only regular files and folders (links and special files skipped, listed in
        the report), 0700/0600 here, never outside `local`. The limits (self.limits) apply
        to the running totals of `report`: pass one report to every download of a job.
        Past them: ResultsTooLarge. Unreadable: JobFileError. Local errors: OSError."""
        raise NotImplementedError

    async def listdir(self, path: str) -> list[RemoteEntry]:
        """Every file and folder below `path`, recursively."""
        raise NotImplementedError

    async def read_range(self, path: str, offset: int, max_bytes: int) -> bytes:
        """Bytes of a file from `offset` (b'' when missing or nothing new). Only a regular
        file is opened: anything else raises JobFileError, as a file we may not read."""
        raise NotImplementedError

    async def read_ranges(self, requests: Sequence[tuple[str, int, int]]
                          ) -> list[bytes | JobFileError]:
        """Several read_range calls, batched where the transport can. A file that cannot be
        read is reported in its place as a JobFileError: one bad file stops no other."""
        out: list[bytes | JobFileError] = []
        for p, o, n in requests:
            try:
                out.append(await self.read_range(p, o, n))
            except JobFileError as exc:
                out.append(exc)
        return out

    async def rmtree(self, path: str) -> None:
        raise NotImplementedError

    async def close(self) -> None:
        pass


class LocalTransport(Transport):
    """This machine as the 'HPC': for the local handler and the embedded default."""

    def __init__(self, work_root: str, limits: CopyLimits | None = None):
        self.work_root = os.path.abspath(os.path.expanduser(work_root))
        self.commands = CommandCounter()
        self.limits = limits or DEFAULT_LIMITS

    def _path(self, path: str) -> str:
        return confine(self.work_root, path)

    async def resolve_work_root(self) -> str:
        await asyncio.to_thread(make_private_dirs, self.work_root)
        return self.work_root

    async def run(self, argv, stdin=None, timeout=None):
        self.commands.record(argv)
        proc = await asyncio.create_subprocess_exec(
            *argv, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE)
        out, err = await asyncio.wait_for(
            proc.communicate(stdin.encode() if stdin else None), timeout)
        return CommandResult(tuple(argv), proc.returncode, out.decode(errors="replace"),
                             err.decode(errors="replace"))

    async def makedirs(self, path):
        full = self._path(path)
        await asyncio.to_thread(make_private_dirs, full)
        return full

    async def write_bytes(self, path, data, mode=0o600):
        full = self._path(path)
        await asyncio.to_thread(make_private_dirs, os.path.dirname(full))
        sink = LocalSink(self.work_root, for_hpc=True)
        writer = await sink.create(full, mode)
        try:
            await writer.write(data)
        finally:
            await writer.close()

    async def upload(self, local, remote):
        full = self._path(remote)

        def copy():  # the whole copy in one thread (copy.py's rules, direct calls)
            make_private_dirs(os.path.dirname(full))
            return asyncio.run(copy_tree(LocalSource(inline=True), local,
                                         LocalSink(full, for_hpc=True, inline=True), full,
                                         UPLOAD))
        return await asyncio.to_thread(copy)

    async def download(self, remote, local, report=None):
        full, local = self._path(remote), os.path.abspath(local)

        def copy():
            os.makedirs(os.path.dirname(local), exist_ok=True)
            return asyncio.run(copy_tree(LocalSource(inline=True), full,
                                         LocalSink(local, inline=True), local,
                                         download_policy(self.limits), report))
        return await asyncio.to_thread(copy)

    async def listdir(self, path):
        full = self._path(path)

        def walk():
            if not os.path.isdir(full):  # os.walk would say nothing at all
                raise FileNotFoundError(errno.ENOENT, "no such folder", full)
            entries = []
            for dirpath, dirnames, filenames in os.walk(full):
                for name in dirnames:
                    entries.append(RemoteEntry(
                        os.path.relpath(os.path.join(dirpath, name), full), 0, True))
                for name in filenames:
                    p = os.path.join(dirpath, name)
                    entries.append(RemoteEntry(os.path.relpath(p, full),
                                               os.lstat(p).st_size, False))
            return sorted(entries, key=lambda e: e.path)
        return await asyncio.to_thread(walk)

    async def read_range(self, path, offset, max_bytes):
        full = self._path(path)

        def read():
            try:
                if not stat.S_ISREG(os.lstat(full).st_mode):
                    raise JobFileError(full, "not a regular file (a named pipe, device, "
                                             "socket or symlink): not read")
                # O_NONBLOCK: should the file be swapped for a pipe after lstat, open
                # does not wait for a writer
                with open(os.open(full, os.O_RDONLY | os.O_NONBLOCK), "rb") as f:
                    f.seek(offset)
                    return f.read(max_bytes)
            except FileNotFoundError:
                return b""
            except OSError as exc:
                raise classify(exc, path=full) from exc
        return await asyncio.to_thread(read)

    async def rmtree(self, path):
        full = self._path(path)
        await asyncio.to_thread(shutil.rmtree, full, True)
