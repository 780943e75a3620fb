"""Moving files: stage-in before submit, stage-out when a job ends."""
from __future__ import annotations

import os
import shutil

from hpcbridge.connectors.layout import COLLECTED_FILES, RESULT_DIR, WorkDir
from hpcbridge.connectors.transport import Transport

from .jobspec import job_json

IGNORED = {".git", "__pycache__", ".ipynb_checkpoints"}


async def stage_in(transport: Transport, job, app_path: str, upload_path: str | None,
                   workdir: WorkDir) -> int:
    """App files, the user's data and job.json into the remote work dir; files sent."""
    await transport.makedirs(workdir.path)
    sent = 0
    for name in sorted(os.listdir(app_path)):
        if name in IGNORED:
            continue
        await transport.upload(os.path.join(app_path, name), workdir.join(name))
        sent += 1
    if upload_path:
        await transport.upload(upload_path, workdir.data)
        sent += 1
    await transport.makedirs(workdir.result)
    await transport.write_bytes(workdir.job_json, job_json(job))
    return sent + 1


async def stage_out(transport: Transport, workdir: WorkDir, dest: str) -> int:
    """The results folder and the job's logs and job.json into the middleware's result
    store (written aside, then swapped in whole); files collected."""
    tmp = dest + ".partial"
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    entries = {e.path: e for e in await transport.listdir(workdir.path)}
    if RESULT_DIR in entries and entries[RESULT_DIR].is_dir:
        await transport.download(workdir.result, os.path.join(tmp, RESULT_DIR))
    for name in COLLECTED_FILES:
        if name in entries:
            await transport.download(workdir.join(name), os.path.join(tmp, name))
    shutil.rmtree(dest, ignore_errors=True)
    os.replace(tmp, dest)
    return sum(len(files) for _, _, files in os.walk(dest))
