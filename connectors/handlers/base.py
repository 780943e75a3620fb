"""One scheduler handler per cluster type (seeds/001: required methods are abstract,
optional ones have a default).

A site adds its own by subclassing `SchedulerHandler` and naming the class in
`Site.scheduler_handlers` (see handlers/__init__.py and docs/configuration.md).
"""
from __future__ import annotations

import abc
from collections.abc import Sequence

from ..config import HPCConfig
from ..spec import JobSpec
from ..state import JobState
from ..transport import Transport


class SchedulerHandler(abc.ABC):
    """Drives one HPC's scheduler through a transport (SSH pool or this machine)."""

    def __init__(self, config: HPCConfig, transport: Transport):
        self.config = config
        self.transport = transport

    @classmethod
    def default_transport(cls, config: HPCConfig) -> Transport:
        """The transport a handler gets when none is given: the HPC's SSH pool."""
        from ..pool import ConnectorPool  # asyncssh only where it is used
        return ConnectorPool(config)

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
    async def cancel_by_name(self, name: str) -> None:
        """Make sure no job of this name survives (a cancel after an interrupted submit).
        The default cancels what find_by_name finds; a scheduler that can do it in one
        command (Slurm: scancel --name) overrides it."""
        cancelled: set[str] = set()
        while (scheduler_id := await self.find_by_name(name)) not in (None, *cancelled):
            await self.cancel(scheduler_id)  # a cancel of an ended job changes nothing
            cancelled.add(scheduler_id)

    async def close(self) -> None:
        await self.transport.close()
