"""Slurm over SSH: sbatch, one squeue + at most one sacct per status round, scancel.

Each command starts with the HPC's configured words (HPCConfig.sbatch_command, …: a
site's path or options); the arguments below follow them, one argv word each.
"""
from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime as dt
import re
import shlex
from collections.abc import Sequence

from ..errors import (
    ConnectorError,
    HPCUnavailable,
    SchedulerError,
    SchedulerUnavailable,
    command_error,
)
from ..spec import ArraySpec, JobSpec, render_array_script
from ..state import UNKNOWN, JobState, parse_sacct, parse_squeue
from .base import SchedulerHandler

SQUEUE_FORMAT = "%i|%T|%r|%M|%C|%j"
SACCT_FORMAT = "JobID,JobName,State,ExitCode,Elapsed,AllocCPUS"
JOB_ID = re.compile(r"^[0-9]+(_[0-9]+)?$")  # a job, or one element of an array
# many sbatch in one command, SUBMIT_PARALLEL at a time (the scripts' paths on stdin, one
# a line: safe paths, no blanks or quotes): per script one line "<script>\t<exit
# status>\t<what sbatch said>", one short write each, so lines never mix
SUBMIT_PARALLEL = 16
SUBMIT_ONE = ('out=$({sbatch} "$1" 2>&1); rc=$?; printf "%s\\t%s\\t%s\\n" "$1" "$rc" '
              '"$(printf %s "$out" | tr "\\n\\t" "  " | cut -c1-1000)"')


class SlurmHandler(SchedulerHandler):
    supports_arrays = True

    @property
    def _who(self) -> list[str]:
        return ["-u", self.config.user] if self.config.user else ["--me"]

    async def submit(self, spec: JobSpec) -> str:
        return await self._sbatch(*self.batch_script(spec))

    async def _sbatch(self, script: str, text: bytes) -> str:
        """Write a batch script and sbatch it; the scheduler's id."""
        await self.transport.write_bytes(script, text, 0o700)
        result = await self.transport.run([*self.config.sbatch_command, "--parsable", script])
        if result.exit_status != 0:
            raise self._failed("sbatch", result)
        job_id = result.stdout.strip().split(";")[0]
        if not job_id.isdigit():
            raise SchedulerError(f"sbatch answered {result.stdout.strip()!r}")
        return job_id

    async def submit_scripts(self, specs: Sequence[JobSpec]) -> list[str | Exception]:
        """Every written script sbatch'ed by one command (a loop on the login node); per
        spec the id or the refusal, classified as one sbatch's would be. The command
        itself failing raises: nothing is known of any of them."""
        return await self._sbatch_written([f"{spec.workdir}/{self.SCRIPT}" for spec in specs])

    async def _sbatch_written(self, paths: Sequence[str]) -> list[str | Exception]:
        """The written batch scripts at `paths` sbatch'ed by one command: per path the id
        or the refusal. The command itself failing raises."""
        if not paths:
            return []
        sbatch = shlex.join([*self.config.sbatch_command, "--parsable"])
        result = await self.transport.run(
            ["xargs", "-n", "1", "-P", str(SUBMIT_PARALLEL), "sh", "-c",
             SUBMIT_ONE.format(sbatch=sbatch), "sh"], stdin="".join(p + "\n" for p in paths))
        answers = dict(line.split("\t", 1) for line in result.stdout.splitlines()
                       if "\t" in line)
        if result.exit_status != 0 or set(answers) != set(paths):
            raise SchedulerUnavailable(f"{self.config.id}: the batched sbatch ended with "
                                       f"{result.exit_status} after {len(answers)} of "
                                       f"{len(paths)} jobs: {result.stderr.strip()[:300]}")
        return [self._one_submitted(answers[path]) for path in paths]

    def _one_submitted(self, line: str) -> str | Exception:
        """One answer of the loop ("<exit status>\t<what sbatch said>")."""
        rc, _, said = line.partition("\t")
        if rc != "0":
            return command_error("sbatch", said, self.config.id)
        words = [w.split(";")[0] for w in said.split()]
        job_id = next((w for w in reversed(words) if w.isdigit()), None)
        return job_id or SchedulerError(f"sbatch answered {said.strip()!r}")

    def array_script(self, array: ArraySpec) -> tuple[str, bytes]:
        """(path, text) of an array's batch script, in array.home."""
        return f"{array.home}/{self.SCRIPT}", \
            render_array_script(array, self.config.batch_prelude).encode()

    async def submit_array(self, array: ArraySpec) -> str:
        """The array's script written, and sbatch'ed once; the array's id."""
        return await self._sbatch(*self.array_script(array))

    async def submit_arrays(self, arrays: Sequence[ArraySpec]) -> list[str | Exception]:
        """A sweep's arrays (MaxArraySize cuts a large one in several): their scripts
        written (at once, over one SFTP channel where the transport has shared ones), then
        all sbatch'ed by one command; per array its id or the refusal. Writing or the
        command failing raises: nothing is known of any of them."""
        scripts = [self.array_script(a) for a in arrays]
        shared = getattr(self.transport, "shared_channel", None)
        async with (shared() if shared and len(scripts) > 1 else contextlib.nullcontext()):
            await asyncio.gather(*(self.transport.write_bytes(path, text, 0o700)
                                   for path, text in scripts))
        return await self._sbatch_written([path for path, _ in scripts])

    async def status_many(self, ids: Sequence[str]) -> dict[str, JobState]:
        ids = list(dict.fromkeys(ids))
        if not ids:
            return {}
        # One squeue for every job of our account, however many ids are asked about; -r:
        # one line per array element (123_7), pending ones too
        result = await self.transport.run(
            [*self.config.squeue_command, "-h", "-r", *self._who, "-o", SQUEUE_FORMAT])
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
                state = accounted.get(i)
                # a row without a name ("allocation": not written yet, or never, when the
                # controller died) says "no name", not "names unknown": it may be the row of
                # another job given this id again (decisions.record_verdict: NAMELESS)
                states[i] = dataclasses.replace(state, name=state.name or "") if state \
                    else JobState(i, UNKNOWN)
        return states

    async def cancel(self, scheduler_id: str) -> None:
        await self.cancel_many([scheduler_id])

    async def cancel_many(self, scheduler_ids: Sequence[str]) -> None:
        """One scancel for jobs and array elements (123_7; 123 is the whole array)."""
        for scheduler_id in scheduler_ids:
            if not JOB_ID.fullmatch(scheduler_id):
                raise SchedulerError(f"not a Slurm job id: {scheduler_id!r}")
        if not scheduler_ids:
            return
        result = await self.transport.run([*self.config.scancel_command, *scheduler_ids])
        if result.exit_status != 0 and "already completing" not in result.stderr \
                and "Invalid job id" not in result.stderr:
            raise self._failed("scancel", result)

    async def cancel_by_name(self, name: str) -> None:
        """One scancel for every job of this name (of our account), however many."""
        result = await self.transport.run([*self.config.scancel_command, *self._who,
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

    async def find_states_by_name(self, name: str) -> dict[str, JobState]:
        """Every record of this name, id → state, from the controller (squeue, any state)
        or, when it has none, from accounting (sacct: a non-final row is UNKNOWN, as in
        status_many). {} only when both answered and neither knows the name; a failed
        lookup raises. Unlike status_many's answer by id, each record here carries the
        job's own name, so it cannot be another job's under a reused id."""
        result = await self.transport.run(
            [*self.config.squeue_command, "-h", "-t", "all", "-n", name, "-o", SQUEUE_FORMAT])
        if result.exit_status != 0:
            raise self._failed("squeue", result, transient=True)
        states = {i: s for i, s in parse_squeue(result.stdout).items() if s.name == name}
        if states:
            return states
        since = (dt.datetime.now() - dt.timedelta(days=30)).strftime("%Y-%m-%dT%H:%M:%S")
        result = await self.transport.run([*self.config.sacct_command, "-X", "-n", "-P",
                                           "-S", since, f"--name={name}",
                                           f"--format={SACCT_FORMAT}"])
        if result.exit_status != 0:
            raise self._failed("sacct", result, transient=True)
        return {i: s for i, s in parse_sacct(result.stdout).items() if s.name in (None, name)}

    async def find_many_by_name(self, names: Sequence[str]) -> dict[str, str]:
        """One squeue (and one sacct for the names it does not list) for a whole batch:
        name → job id (an array's own id for a sweep). A failed lookup raises."""
        wanted = set(names)
        if not wanted:
            return {}
        result = await self.transport.run(
            [*self.config.squeue_command, "-h", "-t", "all", *self._who, "-o", "%F|%j"])
        if result.exit_status != 0:
            raise self._failed("squeue", result, transient=True)
        found = _named(result.stdout, wanted)
        missing = sorted(wanted - found.keys())
        if missing:
            since = (dt.datetime.now() - dt.timedelta(days=30)).strftime("%Y-%m-%dT%H:%M:%S")
            result = await self.transport.run([
                *self.config.sacct_command, "-X", "-n", "-P", "-S", since,
                f"--name={','.join(missing)}", "--format=JobID,JobName"])
            if result.exit_status != 0:
                raise self._failed("sacct", result, transient=True)
            found.update(_named(result.stdout, set(missing)))
        return found

    def _failed(self, program: str, result, transient: bool = False) -> ConnectorError:
        """A scheduler command that exited non-zero: the controller unreachable is
        transient, anything else the scheduler's refusal (or `transient`: a lookup whose
        answer we do not have)."""
        error = command_error(program, result.stderr, self.config.id)
        if transient and not isinstance(error, HPCUnavailable):
            return SchedulerUnavailable(f"{self.config.id}: {error}: the answer is unknown")
        return error


def _named(output: str, wanted: set[str]) -> dict[str, str]:
    """'<id>|<name>' lines → name → the (first) job id of each wanted name; an array
    element's or range's id ('123_7', '123_[0-9]') as the array's (123)."""
    found: dict[str, str] = {}
    for line in output.splitlines():
        scheduler_id, _, name = line.strip().partition("|")
        scheduler_id = scheduler_id.split("_")[0]
        if name in wanted and scheduler_id.isdigit():
            found.setdefault(name, scheduler_id)
    return found
