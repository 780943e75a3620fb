"""Sweeps on an HPC with job arrays (Slurm): all queued elements of a sweep go to the
scheduler as one `sbatch --array`, staged once (issue #24).

The app's files and the sweep's upload are copied once into the sweep's folder
(layout.SweepDir); every element's own folder (its job.json, its params file, result/,
links to the shared files) arrives in one archive, unpacked by one command. The element's
scheduler id is `<array id>_<task id>`, so its status, logs, results and cancel work as for
any job. A sweep larger than the site's MaxArraySize (HPCConfig.max_array_size) is cut
into several arrays of max_array_size - 1 elements (spec.array_chunks: element i is task
i - offset of the array at that offset), sbatch'ed by one command; each array at an
offset has a folder of links `chunks/<offset>/<task id>` → `elements/<i>` through which
Slurm writes the logs. Idempotent as a single job's submission: the attempt is recorded
on the sweep (and its elements) before sbatch; after a crash one lookup by the arrays'
names (spec.chunk_name) finds those sent, and only the others are sent. On an HPC without
arrays the elements are plain jobs (tasks.drive)."""
from __future__ import annotations

import contextlib
import io
import logging
import tarfile
import time

from hpcbridge.clock import utcnow
from hpcbridge.connectors.errors import ConnectorError
from hpcbridge.connectors.layout import PARAMS_FILE, RESULT_DIR, SweepDir
from hpcbridge.connectors.spec import (
    ArraySpec,
    array_chunks,
    array_task,
    chunk_name,
    params_script,
)
from hpcbridge.lifecycle import IN_SCHEDULER, JobStatus
from hpcbridge.manifest import ManifestError

from . import batch, claims, tasks
from .admission import _open_for
from .jobspec import job_environment, job_json, sweep_spec
from .staging import app_files, inputs, stage_shared

log = logging.getLogger("hpcbridge.maintainer")
S = JobStatus
ARCHIVE = "elements.tar.gz"
CHUNKS = "chunks"  # in the sweep's folder: per array at an offset, its links and script


def chunk_root(folder: SweepDir, offset: int) -> str:
    """The links folder of the sweep's array at `offset` (none for the first array)."""
    return f"{folder.path}/{CHUNKS}/{offset}"


def advance(rt, job) -> str:
    """An element's task: its whole sweep is submitted (once, by one worker at a time);
    this element's outcome."""
    key = f"sweep-{job.sweep_id}"
    if not claims.take(rt, key):
        return "with its sweep: another worker has it"
    try:
        out = submit_sweep(rt, job)
    finally:
        claims.release(rt, key)
    return out.get(job.id, "with its sweep")


def submit_sweep(rt, job) -> dict[str, str]:
    """queued/staging → submitted for every pending element of `job`'s sweep;
    element id → outcome."""
    out: dict[str, str] = {}
    sweep = rt.store.get_sweep(job.sweep_id)
    if sweep is None:
        batch.failed_all(rt, job.hpc, [job], ConnectorError("its sweep no longer exists"), out)
        return out
    elements = _admit(rt, sweep, job)
    if not elements:
        return {job.id: "waiting for capacity"}
    handler = rt.handlers[sweep.hpc]
    size = rt.hpcs[sweep.hpc].max_array_size
    arrays: dict[int, str] = {}
    try:
        folder = SweepDir.of(rt.work_root(sweep.hpc), sweep.user, sweep.id)
        rt.store.update_sweep(sweep.id, remote_dir=folder.path)
        rt.store.update_jobs({e.id: {"remote_dir": folder.element(e.sweep_index).path,
                                     "worker": rt.worker_id} for e in elements})
        chunks = array_chunks([e.sweep_index for e in elements], size)
        arrays = _looked_up(rt, handler, sweep, chunks)
        if len(arrays) < len(chunks):
            arrays.update(_stage_and_submit(rt, handler, sweep, folder, elements, chunks,
                                            arrays, size, out))
    except Exception as exc:  # every error has its class (decisions.on_error)
        batch.failed_all(rt, sweep.hpc, [e for e in elements if e.id not in out], exc, out)
        return out
    _record(rt, sweep, arrays, [e for e in elements if e.id not in out], size, out)
    return out


def _admit(rt, sweep, job) -> list:
    """The sweep's pending elements, those queued moved to staging together, if the HPC
    takes jobs and has room for at least one (a sweep is admitted whole; its throttle
    bounds how many of its elements run at once)."""
    if not _open_for(rt, job):
        return []
    wait = rt.tuning.admission_lock_seconds
    try:
        with rt.redis.lock(rt.key("admit", sweep.hpc), timeout=wait, blocking_timeout=wait):
            queued = rt.store.sweep_elements(sweep.id, [S.QUEUED])
            if queued and rt.store.count_jobs(sweep.hpc, IN_SCHEDULER) >= \
                    rt.hpcs[sweep.hpc].capacity:
                return []
            moves = {e.id: (f"staging on {sweep.hpc} (sweep {sweep.id})",
                            {"worker": rt.worker_id}) for e in queued}
            rt.store.transition_many(S.STAGING, moves, expect=[S.QUEUED])
    except Exception as exc:  # the lock (LockError) or Redis: offered again later
        log.warning("admission of sweep %s: %s", sweep.id, exc)
        return []
    return rt.store.sweep_elements(sweep.id, [S.STAGING])


def _looked_up(rt, handler, sweep, chunks: dict[int, tuple[int, ...]]) -> dict[int, str]:
    """offset → id of the arrays of `chunks` the scheduler has, if an sbatch was attempted
    (one lookup for all their names; a lookup that fails raises: unknown, asked again
    later)."""
    if not sweep.submit_attempted_at:
        return {}
    names = {chunk_name(sweep.id, offset): offset for offset in chunks}
    found = rt.run(handler.find_many_by_name(list(names)))
    arrays = {names[name]: array_id for name, array_id in found.items() if name in names}
    if arrays:
        _note_arrays(rt, sweep, arrays.values())
    return arrays


def _note_arrays(rt, sweep, array_ids) -> None:
    """The sweep's scheduler_id: the ids of all its arrays, comma-joined."""
    known = (rt.store.get_sweep(sweep.id).scheduler_id or "").split(",")
    ids = list(dict.fromkeys(i for i in (*known, *array_ids) if i))
    rt.store.update_sweep(sweep.id, scheduler_id=",".join(ids))


def _stage_and_submit(rt, handler, sweep, folder: SweepDir, elements, chunks, found,
                      size: int, out) -> dict[int, str]:
    """Stage once (unless an earlier attempt did: the attempt is recorded after staging),
    then the arrays not `found` sbatch'ed by one command; offset → id of the arrays sent.
    An array the scheduler refuses fails (or requeues) its elements by the error's class."""
    todo = [e for e in elements if array_task(e.sweep_index, size)[0] not in found]
    app = rt.store.get_app(sweep.app)
    upload = rt.store.get_upload(sweep.upload) if sweep.upload else None
    try:  # built before staging: a sweep that cannot run stages nothing
        spec = sweep_spec(sweep, app, folder.path, rt.hpcs[sweep.hpc])
    except ManifestError as exc:
        rt.store.transition_many(S.FAILED, {e.id: (exc.message, {}) for e in todo},
                                 expect=[S.STAGING])
        out.update({e.id: "failed" for e in todo})
        return {}
    if not sweep.submit_attempted_at:
        app_path, upload_path = inputs(rt.site.artifacts, app.id,
                                       upload.id if upload else None)
        archive = element_archive(todo, folder, app_files(app_path), bool(upload), size)
        rt.run(_stage(handler.transport, app_path, upload_path, folder, archive),
               timeout=tasks.TRANSFER_TIMEOUT_SECONDS)
    current = rt.store.get_jobs(e.id for e in todo)
    ready = []
    for element in todo:
        if current[element.id].cancel_requested:
            out[element.id] = tasks.cancel(rt, current[element.id])
        else:
            ready.append(element)
    if not ready:
        return {}
    # recorded before sbatch: from now on only a lookup by name can tell
    now = utcnow()
    rt.store.update_sweep(sweep.id, submit_attempted_at=now)
    rt.store.update_jobs({e.id: {"submit_attempted_at": now} for e in ready})
    arrays = sweep_arrays(spec, sweep, folder, [e.sweep_index for e in ready], size,
                          len(chunks))
    answers = rt.run(handler.submit_arrays(arrays))
    sent = {a.offset: answer for a, answer in zip(arrays, answers)
            if not isinstance(answer, Exception)}
    if sent:
        _note_arrays(rt, sweep, sent.values())
    for array, answer in zip(arrays, answers):
        if isinstance(answer, Exception):
            refused = [e for e in ready if array_task(e.sweep_index, size)[0] == array.offset]
            batch.failed_all(rt, sweep.hpc, refused, answer, out)
    return sent


def sweep_arrays(spec, sweep, folder: SweepDir, indices, max_array_size: int,
                 n_arrays: int) -> list[ArraySpec]:
    """The arrays `indices` are sent as: one per offset (spec.array_chunks), named
    spec.chunk_name; the sweep's throttle divided among its `n_arrays` arrays (at least 1
    each) so that the sweep as a whole keeps to it."""
    throttle = max(1, sweep.throttle // max(1, n_arrays)) if sweep.throttle else None
    return [ArraySpec(spec.model_copy(update={"name": chunk_name(sweep.id, offset)}),
                      tasks_, folder.elements, PARAMS_FILE, throttle, offset,
                      chunk_root(folder, offset) if offset else None)
            for offset, tasks_ in array_chunks(indices, max_array_size).items()]


async def _stage(transport, app_path: str, upload_path: str | None, folder: SweepDir,
                 archive: bytes) -> None:
    """The shared files, and the elements' archive written and unpacked (one command)."""
    await transport.makedirs(folder.path)
    shared = getattr(transport, "shared_channel", None)
    async with (shared() if shared else contextlib.nullcontext()):  # the SFTP calls of the stage-in on one channel
        await stage_shared(transport, app_path, upload_path, folder.app, folder.data)
        await transport.write_bytes(f"{folder.path}/{ARCHIVE}", archive)
    result = await transport.run(["sh", "-c", 'cd "$1" && tar -xzf "$2" && rm -f "$2"',
                                  "sh", folder.path, ARCHIVE])
    if result.exit_status != 0:
        raise ConnectorError(f"the sweep's elements could not be unpacked on the HPC: "
                             f"{result.stderr.strip()[:300]}")


def element_archive(elements, folder: SweepDir, app_names: list[str],
                    has_data: bool, max_array_size: int) -> bytes:
    """A gzipped tar of every element's folder (relative to the sweep's): its job.json,
    params file, an empty result/ and links to the shared app files and data; for an
    element of an array at an offset (max_array_size cuts the sweep), its link in that
    array's folder (Slurm writes its logs through it)."""
    buffer = io.BytesIO()
    now = time.time()
    with tarfile.open(fileobj=buffer, mode="w:gz", compresslevel=1,
                      format=tarfile.GNU_FORMAT) as tar:
        def add(name: str, kind: bytes, data: bytes = b"", target: str = "") -> None:
            info = tarfile.TarInfo(name)
            info.type, info.mtime, info.linkname = kind, now, target
            info.mode = 0o700 if kind == tarfile.DIRTYPE else 0o600
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data) if data else None)
        roots: set[int] = set()
        for e in elements:
            workdir = folder.element(e.sweep_index)
            base = f"elements/{e.sweep_index}"
            add(base, tarfile.DIRTYPE)
            add(f"{base}/{RESULT_DIR}", tarfile.DIRTYPE)
            add(f"{base}/job.json", tarfile.REGTYPE, job_json(e))
            env = job_environment(e.id, workdir, e.params or {}, has_data)
            add(f"{base}/{PARAMS_FILE}", tarfile.REGTYPE, params_script(env))
            for name in app_names:
                add(f"{base}/{name}", tarfile.SYMTYPE, target=f"../../app/{name}")
            if has_data:
                add(f"{base}/data", tarfile.SYMTYPE, target="../../data")
            offset, task = array_task(e.sweep_index, max_array_size)
            if offset:
                if offset not in roots:
                    add(f"{CHUNKS}/{offset}", tarfile.DIRTYPE)
                    roots.add(offset)
                add(f"{CHUNKS}/{offset}/{task}", tarfile.SYMTYPE, target=f"../../{base}")
    return buffer.getvalue()


def _record(rt, sweep, arrays: dict[int, str], elements, max_array_size: int,
            out: dict[str, str]) -> None:
    """staging → submitted for the elements in an array (`<array>_<task>`); one cancelled
    meanwhile is taken back; a cancel request that came in is honoured."""
    ids: dict[str, tuple[str, str]] = {}
    for e in elements:
        offset, task = array_task(e.sweep_index, max_array_size)
        if offset in arrays:
            ids[e.id] = (f"{arrays[offset]}_{task}", arrays[offset])
    if not ids:
        return
    moves = {job_id: (f"submitted to {sweep.hpc} as {sid} (array {array_id})",
                      {"scheduler_id": sid}) for job_id, (sid, array_id) in ids.items()}
    rt.store.set_hpc_state(sweep.hpc, reachable=True, message=None)
    moved = set(rt.store.transition_many(S.SUBMITTED, moves, expect=[S.STAGING]))
    lost = [sid for job_id, (sid, _) in ids.items() if job_id not in moved]
    if lost:
        try:
            rt.run(rt.handlers[sweep.hpc].cancel_many(lost))
        except ConnectorError as exc:
            log.warning("could not take back %s: %s", lost, exc)
    current = rt.store.get_jobs(moved)
    for job_id in ids:
        out[job_id] = "submitted" if job_id in moved else "cancelled"
        if job_id in moved and current[job_id].cancel_requested:
            out[job_id] = tasks.cancel(rt, current[job_id])
