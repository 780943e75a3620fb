"""One-way tree copies between the middleware host and an HPC: the containment rules of
what crosses, written once for every transport (docs/security.md).

A copy reads from a `Source` and writes to a `Sink` (localfs.py: this machine; sftpfs.py:
an HPC over SFTP). The walk lstats everything and never follows a link:
- only regular files and folders are copied; a symbolic link, named pipe, socket or device
  is skipped and reported (stage-out, `DOWNLOAD`) or refused (stage-in, `UPLOAD`);
- folders are made 0700, files 0600 (stage-in keeps a file executable as 0700): never
  setuid/setgid/sticky, never the source's owner or times;
- every target is a name the walk checked, joined under the destination: nothing is
  written outside it (the local sink also checks every target's real path);
- stage-out is bounded per job (CopyLimits, from HPCConfig.max_result_bytes/_files): the
  whole tree is listed and checked before a byte is copied, and bytes are counted as they
  are read (a file growing meanwhile is caught too).
"""
from __future__ import annotations

import contextlib
import posixpath
import stat
from dataclasses import dataclass, field
from typing import Protocol

from .errors import JobFileError, ResultsTooLarge, UnsafeSource

CHUNK = 4 * 1024 * 1024  # one read or write; SFTP splits it into parallel requests
DIR_MODE = 0o700
FILE_MODE = 0o600
EXEC_MODE = 0o700

FILE, FOLDER = "regular file", "folder"
_KINDS = ((stat.S_ISREG, FILE), (stat.S_ISDIR, FOLDER), (stat.S_ISLNK, "symbolic link"),
          (stat.S_ISFIFO, "named pipe"), (stat.S_ISSOCK, "socket"),
          (stat.S_ISCHR, "device"), (stat.S_ISBLK, "device"))

NOT_REGULAR = "not a regular file (a named pipe, device, socket or symlink): not read"


@dataclass(frozen=True)
class Entry:
    """What lstat says of a path: its kind, size and permission bits."""

    kind: str
    size: int = 0
    mode: int = 0

    @classmethod
    def of(cls, st_mode: int | None, size: int | None) -> Entry:
        st_mode = st_mode or 0
        kind = next((name for test, name in _KINDS if test(st_mode)), "unknown entry")
        return cls(kind, size or 0, stat.S_IMODE(st_mode))


@dataclass(frozen=True)
class CopyLimits:
    """Per-job bounds of a stage-out; None: unbounded."""

    max_bytes: int | None = None
    max_files: int | None = None

    @classmethod
    def of(cls, config) -> CopyLimits:
        return cls(config.max_result_bytes, config.max_result_files)


@dataclass
class CopyReport:
    """What one or more copies did. Pass the same report to every download of one job:
    the limits apply to its running totals. `skipped`: paths (relative to the job's work
    dir, e.g. 'result/link') of what was not copied, with why, e.g. 'result/x (named pipe)'."""

    files: int = 0
    bytes: int = 0
    folders: int = 0
    skipped: list[str] = field(default_factory=list)

    @property
    def entries(self) -> int:
        return self.files + self.folders + len(self.skipped)

    def describe(self) -> str:
        """The skipped entries, for a job event ('' when nothing was skipped)."""
        if not self.skipped:
            return ""
        shown = ", ".join(self.skipped[:20])
        more = f" and {len(self.skipped) - 20} more" if len(self.skipped) > 20 else ""
        return (f"{len(self.skipped)} entries not collected: only regular files and folders "
                f"are, a link is never followed: {shown}{more}")


@dataclass(frozen=True)
class Policy:
    """The direction's rules: stage-out skips links, is bounded, keeps no x bit; stage-in
    refuses links and keeps a script executable (0700)."""

    direction: str  # "download" | "upload"
    limits: CopyLimits = CopyLimits()

    @property
    def refuses_links(self) -> bool:
        return self.direction == "upload"

    def file_mode(self, entry: Entry) -> int:
        if self.direction == "upload" and entry.mode & 0o111:
            return EXEC_MODE
        return FILE_MODE


def download_policy(limits: CopyLimits) -> Policy:
    return Policy("download", limits)


UPLOAD = Policy("upload")


class Reader(Protocol):
    async def read(self, size: int) -> bytes: ...
    async def close(self) -> None: ...


class Writer(Protocol):
    async def write(self, data: bytes) -> None: ...
    async def close(self) -> None: ...


class Source(Protocol):
    """The side read from. Errors leave as ConnectorErrors naming the path."""

    async def lstat(self, path: str) -> Entry: ...
    async def scandir(self, path: str) -> list[tuple[str, Entry]]: ...
    async def open(self, path: str) -> Reader:
        """A regular file opened for reading (checked again once open), else JobFileError."""


class Sink(Protocol):
    """The side written to. `mkdir`/`create` replace a non-folder in the way (never write
    through a link) and set exactly the mode given."""

    async def mkdir(self, path: str) -> None: ...
    async def create(self, path: str, mode: int) -> Writer: ...
    async def discard(self, path: str) -> None: ...


def safe_name(name: str) -> bool:
    """One path component, as a listing should give: no '/', NUL, '.' or '..'."""
    return name not in ("", ".", "..") and "/" not in name and "\0" not in name


async def copy_tree(source: Source, src: str, sink: Sink, dst: str, policy: Policy,
                    report: CopyReport | None = None) -> CopyReport:
    """Copy the file or folder `src` of `source` to `dst` of `sink` under `policy`;
    returns `report` (a new one if None) with what was copied and skipped."""
    report = report if report is not None else CopyReport()
    top = await source.lstat(src)
    label = posixpath.basename(src.rstrip("/")) or src
    if top.kind == FILE:
        _check_limits(policy.limits, report, 1, top.size, src)
        await _copy_file(source, src, sink, dst, top, policy, report)
    elif top.kind == FOLDER:
        plan = await _plan(source, src, label, policy, report)
        await sink.mkdir(dst)
        for rel, entry in plan:
            if entry.kind == FOLDER:
                await sink.mkdir(posixpath.join(dst, rel))
                report.folders += 1
            else:
                await _copy_file(source, posixpath.join(src, rel), sink,
                                 posixpath.join(dst, rel), entry, policy, report)
    elif policy.refuses_links:
        raise UnsafeSource(src, _refusal(top.kind))
    else:
        raise JobFileError(src, NOT_REGULAR)
    return report


async def _plan(source: Source, src: str, label: str, policy: Policy,
                report: CopyReport) -> list[tuple[str, Entry]]:
    """Every folder and regular file under `src` (relative paths, parents first), links
    and special files skipped into `report` or refused; the limits checked as it grows,
    so a tree over them is refused before anything is copied."""
    plan: list[tuple[str, Entry]] = []
    planned_bytes = 0
    pending = [""]
    while pending:
        folder = pending.pop()
        where = posixpath.join(src, folder) if folder else src
        for name, entry in sorted(await source.scandir(where)):
            rel = posixpath.join(folder, name) if folder else name
            if not safe_name(name):
                entry = Entry("entry with an unsafe name")
            if entry.kind in (FILE, FOLDER):
                plan.append((rel, entry))
                planned_bytes += entry.size if entry.kind == FILE else 0
                if entry.kind == FOLDER:
                    pending.append(rel)
            elif policy.refuses_links:
                raise UnsafeSource(posixpath.join(src, rel), _refusal(entry.kind))
            else:
                report.skipped.append(f"{posixpath.join(label, rel)} ({entry.kind})")
            _check_limits(policy.limits, report, len(plan), planned_bytes, src)
    return plan


def _refusal(kind: str) -> str:
    return (f"is a {kind}: only regular files and folders are copied to the HPC, and a "
            "link is never followed out of its folder")


def _check_limits(limits: CopyLimits, report: CopyReport, entries: int, size: int,
                  src: str) -> None:
    """ResultsTooLarge when `entries` more entries and `size` more bytes would pass."""
    if limits.max_files is not None and report.entries + entries > limits.max_files:
        raise ResultsTooLarge(src, f"the job's results hold more than {limits.max_files:,} "
                                   "files and folders, the limit of this HPC "
                                   "(max_result_files): nothing was collected")
    if limits.max_bytes is not None and report.bytes + size > limits.max_bytes:
        raise _too_many_bytes(src, limits.max_bytes)


def _too_many_bytes(path: str, limit: int) -> ResultsTooLarge:
    return ResultsTooLarge(path, f"the job's results are larger than {human_size(limit)}, "
                                 "the limit of this HPC (max_result_bytes): not collected")


def human_size(n: int) -> str:
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:g} {unit}" if unit == "bytes" else f"{n:.3g} {unit}"
        n /= 1024
    return f"{n} GiB"  # not reached


async def _copy_file(source: Source, src: str, sink: Sink, dst: str, entry: Entry,
                     policy: Policy, report: CopyReport) -> None:
    """One regular file, counted as it is read; a partial copy is removed on failure."""
    reader = await source.open(src)
    try:
        writer = await sink.create(dst, policy.file_mode(entry))
        try:
            while chunk := await reader.read(CHUNK):
                report.bytes += len(chunk)
                limit = policy.limits.max_bytes
                if limit is not None and report.bytes > limit:  # it grew since its lstat
                    raise _too_many_bytes(src, limit)
                await writer.write(chunk)
        except BaseException:
            with contextlib.suppress(Exception):
                await writer.close()
            await sink.discard(dst)
            raise
        await writer.close()
    finally:
        await reader.close()
    report.files += 1
