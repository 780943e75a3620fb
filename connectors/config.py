"""What the connectors need to know about one HPC."""
from __future__ import annotations

import shlex
from typing import Annotated, Literal

from pydantic import BaseModel, BeforeValidator, Field, field_validator


def _command_words(value) -> list[str]:
    """A command line as argv: a string is split as a shell would, without expanding it."""
    words = shlex.split(value) if isinstance(value, str) else list(value)
    if not words:
        raise ValueError("a command needs at least its program")
    return words


# The words a scheduler command starts with; the handler appends its own arguments.
Command = Annotated[list[str], BeforeValidator(_command_words)]


class HPCConfig(BaseModel):
    """One HPC entry of the site configuration."""

    id: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,62}$")
    name: str = ""
    scheduler: str = Field("slurm", pattern=r"^[a-z0-9][a-z0-9_-]{0,62}$", description=(
        "name of the scheduler handler: 'slurm', 'local', or one a site adds with "
        "Site.scheduler_handlers"))
    # SSH (ignored by the local handler)
    host: str = "127.0.0.1"
    port: int = 22
    user: str = ""
    key_file: str | None = None
    known_hosts: str | None = None
    connections: int = Field(2, ge=1, le=16)
    channels_per_connection: int = Field(8, ge=1, le=64)
    connect_timeout: float = 10.0
    command_timeout: float = Field(120.0, gt=0, description=(
        "deadline of one remote command, and of the wait for a free SSH channel"))
    sftp_timeout: float = Field(60.0, gt=0, description=(
        "deadline of one SFTP operation (stat, open, read, write, list), and the longest a "
        "file transfer may go without progress"))
    keepalive_interval: float = 30.0
    connect_retries: int = Field(4, ge=1)
    commands_per_minute: int = Field(6000, ge=1)
    # scheduler side
    work_root: str = "~/hpcbridge"
    partitions: list[str] = []
    default_partition: str | None = None
    capacity: int = Field(50, ge=1)
    max_time_minutes: int = 24 * 60
    poll_interval: float = 5.0
    max_array_size: int = Field(1001, ge=2, description=(
        "set to the site's MaxArraySize (slurm.conf; Slurm's default 1001): a job array's "
        "task ids stay below it, so a sweep larger than max_array_size - 1 elements is "
        "sent as several arrays of at most that many"))
    # stage-out limits, per job (docs/security.md): a job's result/ folder, logs and job.json
    max_result_bytes: int = Field(10 * 1024 ** 3, ge=1, description=(
        "most bytes one job's collected results (result/, logs, job.json) may hold; past "
        "it the job fails with a message naming the limit (default 10 GiB)"))
    max_result_files: int = Field(100_000, ge=1, description=(
        "most files and folders one job's collected results may hold (entries skipped as "
        "links or special files count too); past it the job fails naming the limit"))
    # remote dirs of finished jobs: "always", "on_success" or "never"
    cleanup: Literal["always", "on_success", "never"] = "on_success"
    batch_prelude: list[str] = Field([], description=(
        "lines added to every batch script after hpcbridge's own #SBATCH lines and before "
        "the job's commands, as written (trusted site text): '#SBATCH --account=abc', "
        "'module load python'. Put #SBATCH lines first: sbatch stops reading directives "
        "at the first command"))
    # Slurm command lines (the local handler runs none): a site's program path or options,
    # e.g. "sbatch --qos=short" or "/opt/slurm/bin/squeue"; the handler's arguments follow.
    sbatch_command: Command = ["sbatch"]
    squeue_command: Command = ["squeue"]
    sacct_command: Command = ["sacct"]
    scancel_command: Command = ["scancel"]

    @field_validator("name")
    @classmethod
    def _default_name(cls, v, info):
        return v or info.data.get("id", "")

    @field_validator("batch_prelude")
    @classmethod
    def _one_line_each(cls, v):
        for line in v:
            if any(c in line for c in "\n\r\0"):
                raise ValueError(f"batch_prelude holds one line per entry: {line!r}")
        return v
