"""Sweeps on an HPC with job arrays (Slurm): all queued elements of a sweep go to the
scheduler as one `sbatch --array`, staged once (issue #24).

The app's files and the sweep's upload are copied once into the sweep's folder
(layout.SweepDir); every element's own folder (its job.json, its params file, result/,
links to the shared files) arrives in one archive, unpacked by one command. The element's
scheduler id is `<array id>_<index>`, so its status, logs, results and cancel work as for
any job. Idempotent as a single job's submission: the attempt is recorded on the sweep
(and its elements) before sbatch; after a crash one lookup by the sweep's name finds the
array. On an HPC without arrays the elements are plain jobs (tasks.drive)."""
from __future__ import annotations

import contextlib
import io
import logging
import tarfile
import time

from hpcbridge.clock import utcnow
from hpcbridge.connectors.errors import ConnectorError
from hpcbridge.connectors.layout import PARAMS_FILE, RESULT_DIR, SweepDir
from hpcbridge.connectors.spec import ArraySpec, job_name, params_script
from hpcbridge.lifecycle import IN_SCHEDULER, JobStatus
from hpcbridge.manifest import ManifestError

from . import batch, claims, tasks
from .admission import _open_for
from .jobspec import job_environment, job_json, sweep_spec
from .staging import app_files, inputs, stage_shared

log = logging.getLogger("hpcbridge.maintainer")
S = JobStatus
ARCHIVE = "elements.tar.gz"


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
    try:
        folder = SweepDir.of(rt.work_root(sweep.hpc), sweep.user, sweep.id)
        rt.store.update_sweep(sweep.id, remote_dir=folder.path)
        rt.store.update_jobs({e.id: {"remote_dir": folder.element(e.sweep_index).path,
                                     "worker": rt.worker_id} for e in elements})
        array_id = sweep.scheduler_id or _looked_up(rt, handler, sweep)
        if array_id is None:
            array_id, elements = _stage_and_submit(rt, handler, sweep, folder, elements, out)
    except Exception as exc:  # every error has its class (decisions.on_error)
        batch.failed_all(rt, sweep.hpc, [e for e in elements if e.id not in out], exc, out)
        return out
    if array_id is not None:
        _record(rt, sweep, array_id, elements, out)
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


def _looked_up(rt, handler, sweep) -> str | None:
    """The array's id if an sbatch was attempted and the scheduler has it (one lookup by
    the sweep's name; a lookup that fails raises: unknown, asked again later)."""
    if not sweep.submit_attempted_at:
        return None
    name = job_name(sweep.id)
    found = rt.run(handler.find_many_by_name([name])).get(name)
    if found:
        rt.store.update_sweep(sweep.id, scheduler_id=found)
    return found


def _stage_and_submit(rt, handler, sweep, folder: SweepDir, elements, out):
    """Stage once, then one sbatch --array; (array id, the elements it holds), or
    (None, []) when every element was cancelled meanwhile."""
    app = rt.store.get_app(sweep.app)
    upload = rt.store.get_upload(sweep.upload) if sweep.upload else None
    try:  # built before staging: a sweep that cannot run stages nothing
        spec = sweep_spec(sweep, app, folder.path, rt.hpcs[sweep.hpc])
    except ManifestError as exc:
        rt.store.transition_many(S.FAILED, {e.id: (exc.message, {}) for e in elements},
                                 expect=[S.STAGING])
        out.update({e.id: "failed" for e in elements})
        return None, []
    app_path, upload_path = inputs(rt.site.artifacts, app.id, upload.id if upload else None)
    archive = element_archive(elements, folder, app_files(app_path), bool(upload))
    rt.run(_stage(handler.transport, app_path, upload_path, folder, archive),
           timeout=tasks.TRANSFER_TIMEOUT_SECONDS)
    current = rt.store.get_jobs(e.id for e in elements)
    ready = []
    for element in elements:
        if current[element.id].cancel_requested:
            out[element.id] = tasks.cancel(rt, current[element.id])
        else:
            ready.append(element)
    if not ready:
        return None, []
    # recorded before sbatch: from now on only a lookup by name can tell
    now = utcnow()
    rt.store.update_sweep(sweep.id, submit_attempted_at=now)
    rt.store.update_jobs({e.id: {"submit_attempted_at": now} for e in ready})
    array = ArraySpec(spec, tuple(e.sweep_index for e in ready), folder.elements,
                      PARAMS_FILE, sweep.throttle)
    array_id = rt.run(handler.submit_array(array))
    rt.store.update_sweep(sweep.id, scheduler_id=array_id)
    return array_id, ready


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
                    has_data: bool) -> bytes:
    """A gzipped tar of every element's folder (relative to the sweep's): its job.json,
    params file, an empty result/ and links to the shared app files and data."""
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
    return buffer.getvalue()


def _record(rt, sweep, array_id: str, elements, out: dict[str, str]) -> None:
    """staging → submitted for the elements in the array (`<array>_<index>`); one
    cancelled meanwhile is taken back; a cancel request that came in is honoured."""
    ids = {e.id: f"{array_id}_{e.sweep_index}" for e in elements}
    moves = {job_id: (f"submitted to {sweep.hpc} as {sid} (array {array_id})",
                      {"scheduler_id": sid}) for job_id, sid in ids.items()}
    rt.store.set_hpc_state(sweep.hpc, reachable=True, message=None)
    moved = set(rt.store.transition_many(S.SUBMITTED, moves, expect=[S.STAGING]))
    lost = [sid for job_id, sid in ids.items() if job_id not in moved]
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

