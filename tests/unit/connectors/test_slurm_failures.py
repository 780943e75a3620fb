"""What the Slurm handler makes of a failing scheduler command: an unreachable controller
is transient, a refusal the job's own, and find_by_name never reads a failed lookup as
"not submitted" (that would submit a crashed worker's job twice)."""
from __future__ import annotations

import pytest

from hpcbridge.connectors.config import HPCConfig
from hpcbridge.connectors.errors import HPCUnavailable, SchedulerError, SchedulerUnavailable
from hpcbridge.connectors.handlers import SlurmHandler
from hpcbridge.connectors.spec import JobSpec
from hpcbridge.connectors.transport import CommandCounter, CommandResult

DOWN = "error: Unable to contact slurm controller (connect failure)"


class Scripted:
    """A transport whose commands answer (exit status, stdout, stderr) by program name."""

    def __init__(self, **answers):
        self.commands = CommandCounter()
        self.answers = answers
        self.ran: list[str] = []

    async def run(self, argv, stdin=None, timeout=None):
        self.ran.append(argv[0])
        status, out, err = self.answers.get(argv[0], (0, "", ""))
        return CommandResult(tuple(argv), status, out, err)

    async def write_bytes(self, path, data, mode=0o644):
        pass


def handler(**answers) -> SlurmHandler:
    return SlurmHandler(HPCConfig(id="c1", user="u"), Scripted(**answers))


async def test_find_by_name_when_squeue_fails_is_unknown_not_absent():
    h = handler(squeue=(1, "", f"squeue: {DOWN}"))
    with pytest.raises(SchedulerUnavailable, match="does not answer"):
        await h.find_by_name("hpcbridge-1")
    assert h.transport.ran == ["squeue"]  # no guess from sacct either


async def test_find_by_name_when_sacct_fails_is_unknown_not_absent():
    h = handler(sacct=(1, "", "sacct: error: Problem talking to the database"))
    with pytest.raises(HPCUnavailable, match="the answer is unknown"):
        await h.find_by_name("hpcbridge-1")
    assert h.transport.ran == ["squeue", "sacct"]


async def test_find_by_name_says_absent_only_when_both_answered():
    assert await handler().find_by_name("hpcbridge-1") is None
    assert await handler(sacct=(0, "77\n", "")).find_by_name("hpcbridge-1") == "77"
    assert await handler(squeue=(0, "42\n", "")).find_by_name("hpcbridge-1") == "42"


async def test_sbatch_without_a_controller_is_transient():
    h = handler(sbatch=(1, "", f"sbatch: {DOWN}"))
    with pytest.raises(SchedulerUnavailable):
        await h.submit(JobSpec(name="hpcbridge-1", workdir="/w/1", command="true"))


async def test_sbatch_refusing_the_job_is_the_jobs_own():
    h = handler(sbatch=(1, "", "sbatch: error: invalid partition specified: nope"))
    with pytest.raises(SchedulerError, match="sbatch refused the job") as info:
        await h.submit(JobSpec(name="hpcbridge-1", workdir="/w/1", command="true"))
    assert not isinstance(info.value, HPCUnavailable)


@pytest.mark.parametrize("program, call", [
    ("squeue", lambda h: h.status_many(["5"])),
    ("scancel", lambda h: h.cancel("5")),
])
async def test_status_and_cancel_wait_out_a_controller_outage(program, call):
    with pytest.raises(SchedulerUnavailable):
        await call(handler(**{program: (1, "", f"{program}: error: Socket timed out on "
                                                 "send/recv operation")}))
