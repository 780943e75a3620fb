"""Slurm over SSH: sbatch, one squeue + at most one sacct per status round, scancel.

Each command starts with the HPC's configured words (HPCConfig.sbatch_command, …: a
site's path or options); the arguments below follow them, one argv word each.
"""
from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

from ..errors import (
    ConnectorError,
    HPCUnavailable,
    SchedulerError,
    SchedulerUnavailable,
    command_error,
)
from ..spec import JobSpec, render_batch_script
from ..state import UNKNOWN, JobState, parse_sacct, parse_squeue
from .base import SchedulerHandler

SQUEUE_FORMAT = "%i|%T|%r|%M|%C|%j"
SACCT_FORMAT = "JobID,JobName,State,ExitCode,Elapsed,AllocCPUS"


class SlurmHandler(SchedulerHandler):

    async def submit(self, spec: JobSpec) -> str:
        script = f"{spec.workdir}/job.sbatch"
        text = render_batch_script(spec, self.config.batch_prelude)
        await self.transport.write_bytes(script, text.encode(), 0o700)
        result = await self.transport.run([*self.config.sbatch_command, "--parsable", script])
        if result.exit_status != 0:
            raise self._failed("sbatch", result)
        job_id = result.stdout.strip().split(";")[0]
        if not job_id.isdigit():
            raise SchedulerError(f"sbatch answered {result.stdout.strip()!r}")
        return job_id

    async def status_many(self, ids: Sequence[str]) -> dict[str, JobState]:
        ids = list(dict.fromkeys(ids))
        if not ids:
            return {}
        # One squeue for every job of our account, however many ids are asked about.
        who = ["-u", self.config.user] if self.config.user else ["--me"]
        result = await self.transport.run(
            [*self.config.squeue_command, "-h", *who, "-o", SQUEUE_FORMAT])
        if result.exit_status != 0:
            raise self._failed("squeue", result)
        queued = parse_squeue(result.stdout)
        states = {i: queued[i] for i in ids if i in queued}
        gone = [i for i in ids if i not in states]
        if gone:
            # The rest left the queue: accounting knows how they ended (one sacct).
            result = await self.transport.run([*self.config.sacct_command, "-X", "-n", "-P",
                                               "-j", ",".join(gone), f"--format={SACCT_FORMAT}"])
            if result.exit_status != 0:
                raise self._failed("sacct", result)
            accounted = parse_sacct(result.stdout)
            for i in gone:
                states[i] = accounted.get(i) or JobState(i, UNKNOWN)
        return states

    async def cancel(self, scheduler_id: str) -> None:
        if not scheduler_id.isdigit():
            raise SchedulerError(f"not a Slurm job id: {scheduler_id!r}")
        result = await self.transport.run([*self.config.scancel_command, scheduler_id])
        if result.exit_status != 0 and "already completing" not in result.stderr \
                and "Invalid job id" not in result.stderr:
            raise self._failed("scancel", result)

    async def cancel_by_name(self, name: str) -> None:
        """One scancel for every job of this name (of our account), however many."""
        who = ["-u", self.config.user] if self.config.user else ["--me"]
        result = await self.transport.run([*self.config.scancel_command, *who,
                                           f"--name={name}"])
        if result.exit_status != 0:
            raise self._failed("scancel", result)

    async def find_by_name(self, name: str) -> str | None:
        """None only when squeue and sacct both answered and neither knows the name: a
        failed lookup raises (unknown, ask again), never reads as "not submitted"."""
        result = await self.transport.run(
            [*self.config.squeue_command, "-h", "-t", "all", "-n", name, "-o", "%i"])
        if result.exit_status != 0:
            raise self._failed("squeue", result, transient=True)
        ids = result.stdout.split()
        if not ids:
            # local time on purpose: sacct reads -S as local time, not UTC
            since = (dt.datetime.now() - dt.timedelta(days=30)).strftime("%Y-%m-%dT%H:%M:%S")
            result = await self.transport.run([*self.config.sacct_command, "-X", "-n", "-P",
                                               "-S", since, f"--name={name}", "--format=JobID"])
            if result.exit_status != 0:
                raise self._failed("sacct", result, transient=True)
            ids = [i for i in result.stdout.split() if i.isdigit()]
        return ids[0] if ids else None

    def _failed(self, program: str, result, transient: bool = False) -> ConnectorError:
        """A scheduler command that exited non-zero: the controller unreachable is
        transient, anything else the scheduler's refusal (or `transient`: a lookup whose
        answer we do not have)."""
        error = command_error(program, result.stderr, self.config.id)
        if transient and not isinstance(error, HPCUnavailable):
            return SchedulerUnavailable(f"{self.config.id}: {error}: the answer is unknown")
        return error
