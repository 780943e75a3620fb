"""One scheduler handler per cluster type (seeds/001: required methods are abstract,
optional ones have a default).

A site adds its own by subclassing `SchedulerHandler` and naming the class in
`Site.scheduler_handlers` (see handlers/__init__.py and docs/configuration.md).
"""
from __future__ import annotations

import abc
from collections.abc import Sequence

from ..config import HPCConfig
from ..errors import ConnectorError, HPCUnavailable
from ..spec import ArraySpec, JobSpec, render_batch_script
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
    #: a sweep is one job array (submit_array); otherwise each element is a job of its own
    supports_arrays = False
    SCRIPT = "job.sbatch"  # the batch script's name in a job's work dir

    def batch_script(self, spec: JobSpec) -> tuple[str, bytes]:
        """(path, text) of a job's batch script, for a caller that writes many at once
        before submit_scripts."""
        return f"{spec.workdir}/{self.SCRIPT}", \
            render_batch_script(spec, self.config.batch_prelude).encode()

    async def submit_scripts(self, specs: Sequence[JobSpec]) -> list[str | Exception]:
        """Submit many jobs whose batch scripts were written (batch_script): per spec, the
        scheduler's id or the error that refused it. The default submits one by one; a
        connection error raises (nothing known of the rest)."""
        return await one_by_one(self.submit, specs)

    async def submit_array(self, array: ArraySpec) -> str:
        """Submit a sweep as one job array whose elements are staged; the array's id."""
        raise NotImplementedError(f"{type(self).__name__} has no job arrays")

    async def submit_arrays(self, arrays: Sequence[ArraySpec]) -> list[str | Exception]:
        """Submit a sweep's arrays (MaxArraySize cuts a large sweep in several): per array
        its id or the error that refused it. The default submits one by one; a connection
        error raises (nothing known of the rest)."""
        return await one_by_one(self.submit_array, arrays)

    async def find_many_by_name(self, names: Sequence[str]) -> dict[str, str]:
        """name → id of the jobs submitted under any of `names` (absent: none). The default
        asks find_by_name for each; a failed lookup raises (unknown)."""
        found = {}
        for name in names:
            if (scheduler_id := await self.find_by_name(name)) is not None:
                found[name] = scheduler_id
        return found

    async def cancel_many(self, scheduler_ids: Sequence[str]) -> None:
        """Cancel many jobs (or array elements); the default one by one."""
        for scheduler_id in scheduler_ids:
            await self.cancel(scheduler_id)

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


async def one_by_one(submit, items: Sequence) -> list[str | Exception]:
    """`submit(item)` for each item in turn: its id, or the error that refused it; a
    connection error raises (nothing is known of the rest)."""
    out: list[str | Exception] = []
    for item in items:
        try:
            out.append(await submit(item))
        except HPCUnavailable:
            raise
        except ConnectorError as exc:
            out.append(exc)
    return out
