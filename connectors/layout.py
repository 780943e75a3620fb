"""The remote work dir of a job: the one owner of its layout.

    <work_root>/<user>/<job id>/
        <app files>      copied from the app's folder
        data/            the user's upload (if any)
        job.json         the job's parameters and resources
        .hpcbridge-exit  the batch script's exit status, once it ended
        result/          what the job leaves for the user (collected at the end)
        stdout.log       the scheduler's output files
        stderr.log

A sweep run as one job array shares one folder, its elements each a work dir of their own
(the app's files and the data linked in, so results and logs stay the element's):

    <work_root>/<user>/<sweep id>/
        app/             the app's files, once
        data/            the sweep's upload (if any), once
        job.sbatch       the array's batch script
        elements/<i>/    element i's work dir, as above, plus its params file

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
# the batch script's exit status, written by its EXIT trap: proof that a job the scheduler
# lost (a controller that forgot it) ran to its end anyway (never collected)
EXIT_MARKER = ".hpcbridge-exit"


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


PARAMS_FILE = ".hpcbridge-params.sh"  # an array element's own variables, sourced


@dataclass(frozen=True)
class SweepDir:
    """The paths of one sweep's remote folder (a job array's)."""

    path: str

    @classmethod
    def of(cls, work_root: str, user: str, sweep_id: str) -> SweepDir:
        return cls(f"{work_root.rstrip('/')}/{safe_user_dir(user)}/{sweep_id}")

    @property
    def app(self) -> str:
        return f"{self.path}/app"

    @property
    def data(self) -> str:
        return f"{self.path}/{DATA_DIR}"

    @property
    def elements(self) -> str:
        return f"{self.path}/elements"

    def element(self, index: int) -> WorkDir:
        return WorkDir(f"{self.elements}/{index}")
