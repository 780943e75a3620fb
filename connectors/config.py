"""What the connectors need to know about one HPC."""
from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field, field_validator


class HPCConfig(BaseModel):
    """One HPC entry of the site configuration."""

    id: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,62}$")
    name: str = ""
    scheduler: Literal["slurm", "local"] = "slurm"
    # SSH (ignored by the local handler)
    host: str = "127.0.0.1"
    port: int = 22
    user: str = ""
    key_file: str | None = None
    known_hosts: str | None = None
    connections: int = Field(2, ge=1, le=16)
    channels_per_connection: int = Field(8, ge=1, le=64)
    connect_timeout: float = 10.0
    command_timeout: float = 120.0
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
    # remote dirs of finished jobs: "always", "on_success" or "never"
    cleanup: Literal["always", "on_success", "never"] = "on_success"

    @field_validator("name")
    @classmethod
    def _default_name(cls, v, info):
        return v or info.data.get("id", "")
