"""Moving files: stage-in before submit, stage-out when a job ends."""
from __future__ import annotations

import asyncio
import contextlib
import io
import os
import stat
import tarfile
import time
import uuid
from dataclasses import dataclass, field

from hpcbridge.artifacts import APP_IGNORED
from hpcbridge.connectors.errors import JobFileError
from hpcbridge.connectors.layout import COLLECTED_FILES, JOB_JSON, RESULT_DIR, WorkDir
from hpcbridge.connectors.transport import Transport

from .jobspec import job_json

IGNORED = APP_IGNORED  # never staged: a clone's .git, caches, the snapshot's stamp


async def stage_in(transport: Transport, job, app_path: str, upload_path: str | None,
                   workdir: WorkDir) -> int:
    """App files, the user's data and job.json into the remote work dir; files sent."""
    names = app_files(app_path)
    await transport.makedirs(workdir.path)
    sent = 0
    for name in names:
        await transport.upload(os.path.join(app_path, name), workdir.join(name))
        sent += 1
    if upload_path:
        await transport.upload(upload_path, workdir.data)
        sent += 1
    await transport.makedirs(workdir.result)
    await transport.write_bytes(workdir.job_json, job_json(job))
    return sent + 1


@dataclass
class Staging:
    """One job of a batch to stage: its files, and its batch script (path, text)."""

    job: object
    app_path: str
    upload_path: str | None
    workdir: WorkDir
    script: tuple[str, bytes]


async def stage_many(transport: Transport, items: list[Staging], concurrency: int = 64,
                     channels: int = 4) -> list[int | Exception]:
    """stage_in and the batch script of many jobs, concurrently (at most `concurrency` jobs
    at a time), over at most `channels` SFTP channels whose requests are pipelined (a
    pool's shared_channel; other transports call as they are). Per job: files sent, or the
    error that stopped its staging (the others go on)."""
    limit = asyncio.Semaphore(concurrency)

    async def one(item: Staging) -> int | Exception:
        async with limit:
            try:
                sent = await stage_in(transport, item.job, item.app_path, item.upload_path,
                                      item.workdir)
                await transport.write_bytes(item.script[0], item.script[1], 0o700)
                return sent
            except Exception as exc:  # this job's (or the HPC's: classified by the caller)
                return exc
    shared = getattr(transport, "shared_channel", None)

    async def group(part: list[Staging]) -> list[int | Exception]:
        try:
            async with (shared() if shared else contextlib.nullcontext()):
                return list(await asyncio.gather(*(one(item) for item in part)))
        except Exception as exc:  # the channel itself (not one job's): all of the group
            return [exc] * len(part)
    size = max(1, -(-len(items) // max(1, channels)))
    parts = [items[k:k + size] for k in range(0, len(items), size)]
    done = await asyncio.gather(*(group(part) for part in parts))
    return [result for part in done for result in part]


# An app folder this small, of regular files and folders only, travels with each job of a
# batch in one archive (one SFTP write, one `tar -x`) instead of an SFTP copy per job;
# anything else (a link, a pipe: refused by copy.py's rules) goes the SFTP way.
PACKED_APP_BYTES = 1 << 20
PACKED_APP_FILES = 200


def packable_app(app_path: str) -> list[tuple[str, bytes | None]] | None:
    """The app's folders (None) and files (bytes) by relative path, if it may travel in a
    batch's archive; else None (also for a snapshot that is missing: stage_in says so)."""
    if not os.path.isdir(app_path):
        return None
    entries: list[tuple[str, bytes | None]] = []
    total = 0
    for top, dirs, files in os.walk(app_path, followlinks=False):
        dirs[:] = sorted(d for d in dirs if d not in IGNORED)
        for name in [*dirs, *sorted(f for f in files if f not in IGNORED)]:
            full = os.path.join(top, name)
            rel = os.path.relpath(full, app_path)
            st = os.lstat(full)
            if stat.S_ISDIR(st.st_mode):
                entries.append((rel, None))
            elif stat.S_ISREG(st.st_mode):
                total += st.st_size
                if total > PACKED_APP_BYTES or len(entries) >= PACKED_APP_FILES:
                    return None
                with open(full, "rb") as f:
                    entries.append((rel, f.read()))
            else:
                return None
    return entries


def jobs_archive(root: str, packed: list[tuple[Staging, list]]) -> bytes:
    """A gzipped tar, relative to the work root, of each job's work dir: its app files,
    job.json, an empty result/ and its batch script (0700)."""
    buffer = io.BytesIO()
    now = time.time()
    with tarfile.open(fileobj=buffer, mode="w:gz", compresslevel=1,
                      format=tarfile.GNU_FORMAT) as tar:
        def add(name: str, data: bytes | None, mode: int) -> None:
            info = tarfile.TarInfo(name)
            info.mtime, info.mode = now, mode
            if data is None:
                info.type = tarfile.DIRTYPE
            else:
                info.size = len(data)
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
        for item, app in packed:
            base = os.path.relpath(item.workdir.path, root)
            add(base, None, 0o700)
            for rel, data in app:
                add(f"{base}/{rel}", data, 0o700 if data is None else 0o600)
            add(f"{base}/{RESULT_DIR}", None, 0o700)
            add(f"{base}/{JOB_JSON}", job_json(item.job), 0o600)
            add(os.path.relpath(item.script[0], root), item.script[1], 0o700)
    return buffer.getvalue()


async def stage_packed(transport: Transport, root: str, archive: bytes) -> None:
    """A batch's archive written into the work root and unpacked there (one command)."""
    name = f".hpcbridge-batch-{uuid.uuid4().hex}.tar.gz"
    await transport.write_bytes(f"{root}/{name}", archive)
    result = await transport.run(["sh", "-c", 'cd "$1" && tar -xzf "$2"; rc=$?; rm -f "$2"; '
                                  'exit $rc', "sh", root, name])
    if result.exit_status != 0:
        raise JobFileError(root, f"the batch's files could not be unpacked: "
                                 f"{result.stderr.strip()[:300]}")


async def stage_shared(transport: Transport, app_path: str, upload_path: str | None,
                       app_dir: str, data_dir: str) -> int:
    """A sweep's shared files, once: the app's into `app_dir`, the upload as `data_dir`."""
    names = app_files(app_path)
    await transport.makedirs(app_dir)
    for name in names:
        await transport.upload(os.path.join(app_path, name), f"{app_dir}/{name}")
    if upload_path:
        await transport.upload(upload_path, data_dir)
    return len(names) + bool(upload_path)


def inputs(artifacts, app_id: str, upload_id: str | None) -> tuple[str, str | None]:
    """Where a job's app snapshot and upload are read from: the artifact store, never a
    path from the DB (another host wrote it)."""
    return (artifacts.path("apps", app_id),
            artifacts.path("uploads", upload_id) if upload_id else None)


def app_files(app_path: str) -> list[str]:
    """The names stage-in copies from an app's folder (its snapshot in the artifact store);
    FileNotFoundError, saying so, when the snapshot is not there."""
    try:
        names = os.listdir(app_path)
    except FileNotFoundError:
        raise FileNotFoundError(f"the app's snapshot {app_path} is not in the artifact "
                                "store: register the app again") from None
    return [n for n in sorted(names) if n not in IGNORED]


class ResultsIncomplete(Exception):
    """A collected copy does not match the remote listing (a file the job still changes
    after its end): never swapped in; the job's own, the HPC copy is kept."""


@dataclass
class Collected:
    """What stage-out brought home: files, and what it left out (with why)."""

    files: int = 0
    skipped: list[str] = field(default_factory=list)  # not regular files: never followed
    unreadable: list[str] = field(default_factory=list)  # logs the job made unreadable


async def stage_out(transport: Transport, workdir: WorkDir, dest: str) -> Collected:
    """The results folder and the job's logs and job.json into `dest`, an empty folder
    the artifact store swaps in whole once this returns (ArtifactStore.writing), checked
    against the remote listing: every regular file there, of the same size.

    Raises a ConnectorError for the HPC's side (JobFileError: a result the job made
    unreadable), OSError for this machine's (the artifact store full or read-only) and
    ResultsIncomplete when the copy does not match: then the caller keeps nothing."""
    entries = {e.path: e for e in await transport.listdir(workdir.path)}
    done = Collected()
    if RESULT_DIR in entries and entries[RESULT_DIR].is_dir:
        await transport.download(workdir.result, os.path.join(dest, RESULT_DIR))
    for name in COLLECTED_FILES:
        if name in entries and not entries[name].is_dir:
            try:
                await transport.download(workdir.join(name), os.path.join(dest, name))
            except JobFileError as exc:  # the job's log or job.json, not its results
                done.unreadable.append(f"{name}: {exc.why}")
    wanted = [e for p, e in entries.items() if not e.is_dir and
              (p.startswith(RESULT_DIR + "/") or p in COLLECTED_FILES)]
    done.skipped, done.files = await asyncio.to_thread(_verify, dest, wanted,
                                                       {u.split(":")[0] for u in done.unreadable})
    return done


def _verify(tmp: str, wanted, unreadable: set[str]) -> tuple[list[str], int]:
    """Every listed file is here with its size, or was left out on purpose (a link, a
    pipe: anything not a regular file, which a download never opens). (skipped, files)."""
    skipped, files = [], 0
    for entry in wanted:
        local = os.path.join(tmp, entry.path)
        try:
            size = os.lstat(local).st_size
        except FileNotFoundError:
            if entry.path not in unreadable:
                skipped.append(entry.path)
            continue
        if size != entry.size:
            raise ResultsIncomplete(f"{entry.path}: {size} bytes collected, "
                                    f"{entry.size} on the HPC")
        files += 1
    return skipped, files
