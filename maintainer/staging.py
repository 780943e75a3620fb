"""Moving files: stage-in before submit, stage-out when a job ends."""
from __future__ import annotations

import os
import shutil

from hpcbridge.connectors.transport import Transport

from .lifecycle import DATA_DIR, RESULT_DIR, job_json

IGNORED = {".git", "__pycache__", ".ipynb_checkpoints"}


async def stage_in(transport: Transport, job, app_path: str, upload_path: str | None,
                   workdir: str) -> int:
    """App files, the user's data and job.json into the remote work dir; files sent."""
    await transport.makedirs(workdir)
    sent = 0
    for name in sorted(os.listdir(app_path)):
        if name in IGNORED:
            continue
        await transport.upload(os.path.join(app_path, name), f"{workdir}/{name}")
        sent += 1
    if upload_path:
        await transport.upload(upload_path, f"{workdir}/{DATA_DIR}")
        sent += 1
    await transport.makedirs(f"{workdir}/{RESULT_DIR}")
    await transport.write_bytes(f"{workdir}/job.json", job_json(job))
    return sent + 1


async def stage_out(transport: Transport, workdir: str, dest: str) -> int:
    """Results folder and the job's stdout/stderr into the middleware's result store."""
    tmp = dest + ".partial"
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    entries = {e.path: e for e in await transport.listdir(workdir)}
    if RESULT_DIR in entries and entries[RESULT_DIR].is_dir:
        await transport.download(f"{workdir}/{RESULT_DIR}", os.path.join(tmp, RESULT_DIR))
    for name in ("stdout.log", "stderr.log", "job.json"):
        if name in entries:
            await transport.download(f"{workdir}/{name}", os.path.join(tmp, name))
    shutil.rmtree(dest, ignore_errors=True)
    os.replace(tmp, dest)
    return sum(len(files) for _, _, files in os.walk(dest))
