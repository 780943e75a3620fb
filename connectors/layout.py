"""The remote work dir of a job: the one owner of its layout.

    <work_root>/<user>/<job id>/
        <app files>      copied from the app's folder
        data/            the user's upload (if any)
        job.json         the job's parameters and resources
        result/          what the job leaves for the user (collected at the end)
        stdout.log       the scheduler's output files
        stderr.log

Staging, the batch script, the log tail and stage-out all name these through here.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

RESULT_DIR = "result"
DATA_DIR = "data"
JOB_JSON = "job.json"
STDOUT = "stdout.log"
STDERR = "stderr.log"
LOG_FILES = {"stdout": STDOUT, "stderr": STDERR}
# what stage-out brings home besides result/
COLLECTED_FILES = (STDOUT, STDERR, JOB_JSON)


def safe_user_dir(user: str) -> str:
    """A user name as one safe path component (hub names may hold @, spaces…).

    Every other character becomes +<hex>, a leading dot too (no hidden or '..' folders),
    so two names never share a folder."""
    safe = re.sub(r"[^A-Za-z0-9_.-]", lambda m: f"+{ord(m.group()):x}", user)
    return re.sub(r"^\.", "+2e", safe) or "_"


@dataclass(frozen=True)
class WorkDir:
    """The paths of one job's remote work dir."""

    path: str

    @classmethod
    def of(cls, work_root: str, user: str, job_id: str) -> WorkDir:
        return cls(f"{work_root.rstrip('/')}/{safe_user_dir(user)}/{job_id}")

    def join(self, name: str) -> str:
        return f"{self.path}/{name}"

    @property
    def result(self) -> str:
        return self.join(RESULT_DIR)

    @property
    def data(self) -> str:
        return self.join(DATA_DIR)

    @property
    def job_json(self) -> str:
        return self.join(JOB_JSON)

    def log(self, stream: str) -> str:
        """The path of the job's `stdout` or `stderr` log."""
        return self.join(LOG_FILES[stream])
