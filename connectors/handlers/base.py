"""One scheduler handler per cluster type (seeds/001: required and optional methods)."""
from __future__ import annotations

import abc
from collections.abc import Sequence

from ..config import HPCConfig
from ..errors import NotSupported
from ..spec import JobSpec
from ..state import JobState
from ..transport import Transport


class SchedulerHandler(abc.ABC):
    """Drives one HPC's scheduler through a transport (SSH pool or this machine)."""

    #: the `scheduler` value of an HPC config that selects this class
    kind: str = ""

    def __init__(self, config: HPCConfig, transport: Transport):
        self.config = config
        self.transport = transport

    # --- required -------------------------------------------------------------------
    @abc.abstractmethod
    async def submit(self, spec: JobSpec) -> str:
        """Write the batch script into spec.workdir and submit it; the scheduler's job id."""

    @abc.abstractmethod
    async def status_many(self, ids: Sequence[str]) -> dict[str, JobState]:
        """The state of every id, at a cost that does not grow with len(ids).

        Ids nobody knows are reported with status 'unknown', never as succeeded.
        """

    @abc.abstractmethod
    async def cancel(self, scheduler_id: str) -> None:
        """Ask the scheduler to stop a job (pending or running)."""

    @abc.abstractmethod
    async def find_by_name(self, name: str) -> str | None:
        """The id of a job submitted under `name`, if any: makes submission idempotent."""

    # --- optional -------------------------------------------------------------------
    async def history(self, limit: int = 100) -> list[JobState]:
        raise NotSupported(f"{self.kind} handler has no history")

    async def partitions(self) -> list[str]:
        return list(self.config.partitions)

    async def close(self) -> None:
        await self.transport.close()
