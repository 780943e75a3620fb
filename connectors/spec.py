"""A job as the scheduler sees it, and the batch script it becomes (pure)."""
from __future__ import annotations

import re
import shlex
from collections.abc import Sequence
from dataclasses import dataclass

from pydantic import BaseModel, Field, field_validator

from .layout import EXIT_MARKER, STDERR, STDOUT, WorkDir

# Values that end up in #SBATCH lines are parsed by sbatch, not by a shell, so they
# cannot be quoted: they are restricted to safe characters instead. Checked with
# fullmatch: `$` in re.match also accepts a trailing newline ("debug\n"), which would
# end an #SBATCH line or an `export` early.
_SAFE_WORD = re.compile(r"^[A-Za-z0-9_.:+-]+$")
_SAFE_PATH = re.compile(r"^[A-Za-z0-9_./~+-]+$")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
NAME_PREFIX = "hpcbridge-"


class JobSpec(BaseModel):
    """Everything a scheduler handler needs to start one job."""

    name: str = Field(description="scheduler job name; carries the hpcbridge job uuid")
    workdir: str
    command: str = Field(description="trusted shell text from the app manifest")
    environment: dict[str, str] = {}
    partition: str | None = None
    time_minutes: int = Field(10, ge=1, le=60 * 24 * 30)
    cpus: int = Field(1, ge=1, le=4096)
    memory_mb: int | None = Field(None, ge=1)
    gpus: int = Field(0, ge=0, le=64)
    account: str | None = None

    @field_validator("name")
    @classmethod
    def _name(cls, v):
        if not _SAFE_WORD.fullmatch(v):
            raise ValueError("job name may hold only letters, digits and _.:+-")
        return v

    @field_validator("workdir")
    @classmethod
    def _workdir(cls, v):
        if not v.startswith("/") or not _SAFE_PATH.fullmatch(v) or ".." in v.split("/"):
            raise ValueError("workdir must be absolute, of letters, digits and _./+-, no '..'")
        return v

    @field_validator("partition", "account")
    @classmethod
    def _word(cls, v):
        if v is not None and not _SAFE_WORD.fullmatch(v):
            raise ValueError("may hold only letters, digits and _.:+-")
        return v

    @field_validator("environment")
    @classmethod
    def _env(cls, v):
        for key, value in v.items():
            if not _ENV_NAME.fullmatch(key):
                raise ValueError(f"invalid environment variable name {key!r}")
            if "\0" in value:
                raise ValueError(f"environment variable {key} holds a NUL byte")
        return v

    @property
    def stdout_path(self) -> str:
        return WorkDir(self.workdir).log("stdout")

    @property
    def stderr_path(self) -> str:
        return WorkDir(self.workdir).log("stderr")


def job_name(job_id: str) -> str:
    """The scheduler job name of an hpcbridge job: how a crashed worker finds it again."""
    return f"{NAME_PREFIX}{job_id}"


def chunk_name(sweep_id: str, offset: int = 0) -> str:
    """The scheduler name of the array holding a sweep's elements from `offset` on: the
    sweep's own name for the first one (a sweep that fits one array is named as it always
    was), `<that>+<offset>` for the others; how a crashed worker finds each again."""
    return job_name(sweep_id) if not offset else f"{job_name(sweep_id)}+{offset}"


def array_task(sweep_index: int, max_array_size: int) -> tuple[int, int]:
    """(offset of its array, its task id there) of a sweep's element: arrays hold
    max_array_size - 1 elements, element i is task i - offset of the array at
    offset = i rounded down to a multiple of that (fixed by the index alone, so a
    resubmission after a crash cuts the sweep the same way)."""
    if max_array_size < 2 or sweep_index < 0:
        raise ValueError("max_array_size must be at least 2, an index at least 0")
    task = sweep_index % (max_array_size - 1)
    return sweep_index - task, task


def array_chunks(indices: Sequence[int], max_array_size: int) -> dict[int, tuple[int, ...]]:
    """A sweep's element indices cut into arrays Slurm accepts (task ids below
    MaxArraySize): offset → the task ids of that array, in order."""
    chunks: dict[int, list[int]] = {}
    for index in sorted(set(indices)):
        offset, task = array_task(index, max_array_size)
        chunks.setdefault(offset, []).append(task)
    return {offset: tuple(tasks) for offset, tasks in chunks.items()}


def element_array_name(sweep_id: str, sweep_index: int, scheduler_id: str) -> str:
    """The name of the array an element submitted as `<array id>_<task id>` is in."""
    task = int(scheduler_id.rpartition("_")[2])
    return chunk_name(sweep_id, sweep_index - task)


def render_batch_script(spec: JobSpec, prelude: Sequence[str] = ()) -> str:
    """The batch script of a job. Every user value is quoted with shlex.quote or restricted
    to safe characters; `prelude` is the HPC's own trusted lines (HPCConfig.batch_prelude),
    put after hpcbridge's #SBATCH lines and before the job's first command."""
    lines = _sbatch_lines(spec, spec.stdout_path, spec.stderr_path)
    lines += prelude
    lines.append("set -eo pipefail")
    lines += _exports(spec.environment)
    lines += _exit_marker(shlex.quote(spec.workdir))
    lines.append(f"cd {shlex.quote(spec.workdir)}")
    lines.append(spec.command)
    return "\n".join(lines) + "\n"


def _sbatch_lines(spec: JobSpec, stdout: str, stderr: str) -> list[str]:
    lines = [
        "#!/bin/bash",
        f"#SBATCH --job-name={spec.name}",
        f"#SBATCH --chdir={spec.workdir}",
        f"#SBATCH --output={stdout}",
        f"#SBATCH --error={stderr}",
        f"#SBATCH --time={spec.time_minutes}",
        "#SBATCH --nodes=1",
        "#SBATCH --ntasks=1",
        f"#SBATCH --cpus-per-task={spec.cpus}",
    ]
    if spec.memory_mb:
        lines.append(f"#SBATCH --mem={spec.memory_mb}M")
    if spec.partition:
        lines.append(f"#SBATCH --partition={spec.partition}")
    if spec.gpus:
        lines.append(f"#SBATCH --gres=gpu:{spec.gpus}")
    if spec.account:
        lines.append(f"#SBATCH --account={spec.account}")
    return lines


def _exit_marker(workdir: str) -> list[str]:
    """The script's exit status into its work dir when it ends (set -e, the command's own
    exit, or a signal: bash killed by one would run the EXIT trap with a stale $?, hence
    the signal traps), never changing that status, even when the write fails. Read only
    for a job the scheduler lost (maintainer/reconcile.py). `workdir`: the work dir as
    shell text, quoted."""
    return [f"readonly HPCBRIDGE_EXIT_MARKER={workdir}/{EXIT_MARKER}",
            "trap 'hpcbridge_status=$?; { printf \"%d\" \"$hpcbridge_status\" > "
            "\"$HPCBRIDGE_EXIT_MARKER\"; } 2>/dev/null || :; exit \"$hpcbridge_status\"' EXIT",
            "trap 'exit 143' TERM; trap 'exit 130' INT; trap 'exit 129' HUP"]


def _exports(environment: dict[str, str]) -> list[str]:
    return [f"export {key}={shlex.quote(value)}" for key, value in sorted(environment.items())]


def params_script(environment: dict[str, str]) -> bytes:
    """An array element's own variables (its parameters, its work dir), sourced by the
    array's batch script: every value quoted."""
    return ("\n".join(_exports(environment)) + "\n").encode()


def array_ranges(indices: Sequence[int]) -> str:
    """Slurm's --array list of task ids: [0, 1, 2, 5, 7, 8] → '0-2,5,7-8'."""
    ordered = sorted(set(indices))
    if not ordered or ordered[0] < 0:
        raise ValueError("an array needs at least one index, none negative")
    parts, start, last = [], ordered[0], ordered[0]
    for i in ordered[1:] + [None]:
        if i is not None and i == last + 1:
            last = i
            continue
        parts.append(str(start) if start == last else f"{start}-{last}")
        if i is not None:
            start = last = i
    return ",".join(parts)


@dataclass(frozen=True)
class ArraySpec:
    """A sweep (or one array of a sweep cut by MaxArraySize) as one job array: `spec`
    holds what all elements share (the sweep's work dir, resources, shared environment,
    the app's command); element `offset + task id` has its own variables in
    `<element_root>/<offset + task id>/<params_file>`, its logs next to them. Slurm names
    the logs by task id alone, so an array at an offset has them written through
    `log_root`: a folder of links `<task id>` → that element's folder."""

    spec: JobSpec
    indices: tuple[int, ...]
    element_root: str
    params_file: str
    throttle: int | None = None
    offset: int = 0
    log_root: str | None = None

    @property
    def array(self) -> str:
        ranges = array_ranges(self.indices)
        return f"{ranges}%{self.throttle}" if self.throttle else ranges

    @property
    def home(self) -> str:
        """The folder of the array's own files (its batch script): the sweep's work dir,
        the links folder for an array at an offset."""
        return self.log_root if self.offset and self.log_root else self.spec.workdir


def render_array_script(array: ArraySpec, prelude: Sequence[str] = ()) -> str:
    """The batch script of a job array: the element picks its own variables (sourced) and
    work dir by $SLURM_ARRAY_TASK_ID (plus the array's offset); Slurm writes each
    element's logs into its dir (through `log_root` at an offset)."""
    spec = array.spec
    logs = array.log_root if array.offset else array.element_root
    if not _SAFE_PATH.fullmatch(array.element_root) or not _SAFE_WORD.fullmatch(
            array.params_file) or (array.throttle is not None and array.throttle < 1) \
            or array.offset < 0 or not logs or not _SAFE_PATH.fullmatch(logs):
        raise ValueError("unsafe array layout, offset or throttle")
    element = f"{logs}/%a"
    lines = _sbatch_lines(spec, f"{element}/{STDOUT}", f"{element}/{STDERR}")
    lines.insert(2, f"#SBATCH --array={array.array}")
    lines += prelude
    lines.append("set -eo pipefail")
    lines += _exports(spec.environment)
    task = '"$SLURM_ARRAY_TASK_ID"' if not array.offset else \
        f'"$((SLURM_ARRAY_TASK_ID + {int(array.offset)}))"'
    own = f"{shlex.quote(array.element_root)}/{task}"
    lines += _exit_marker(own)
    lines.append(f". {own}/{array.params_file}")
    lines.append(f"cd {own}")
    lines.append(spec.command)
    return "\n".join(lines) + "\n"
