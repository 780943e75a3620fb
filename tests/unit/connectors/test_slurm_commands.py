"""The Slurm command lines a site configures per HPC (HPCConfig.sbatch_command, …): its
words start each command and the handler's own arguments follow, one argv word each. The
real commands run in tests/integration/connectors/test_slurm_handler.py."""
from __future__ import annotations

import pytest
from pydantic import ValidationError

from hpcbridge.connectors.config import HPCConfig
from hpcbridge.connectors.handlers import SlurmHandler
from hpcbridge.connectors.spec import JobSpec
from hpcbridge.connectors.state import SUCCEEDED, UNKNOWN
from hpcbridge.connectors.transport import CommandCounter, CommandResult

ANSWERS = {  # what each program prints, by the handler's own first argument
    "--parsable": "4242\n",
    "-h": "",  # squeue: nothing queued
    "-X": "4242|hpcbridge-x|COMPLETED|0:0|00:00:01|1\n",  # sacct
}


class Recorder:
    """A transport that records argv and answers like Slurm would."""

    def __init__(self):
        self.commands = CommandCounter()
        self.argv: list[list[str]] = []
        self.files: dict[str, bytes] = {}

    async def run(self, argv, stdin=None, timeout=None):
        self.argv.append(list(argv))
        first = next((a for a in argv if a in ANSWERS), None)
        return CommandResult(tuple(argv), 0, ANSWERS.get(first, ""), "")

    async def write_bytes(self, path, data, mode=0o644):
        self.files[path] = data


SITE = dict(sbatch_command="/opt/slurm/bin/sbatch --qos=short --comment='two words'",
            squeue_command=["squeue", "--clusters=c1"], sacct_command="sacct -M c1",
            scancel_command="scancel --clusters=c1",
            batch_prelude=["#SBATCH --account=abc", "module load python"])


async def run_every_command(config: HPCConfig) -> Recorder:
    t = Recorder()
    handler = SlurmHandler(config, t)
    spec = JobSpec(name="hpcbridge-x", workdir="/w/x", command="true")
    assert await handler.submit(spec) == "4242"
    assert (await handler.status_many(["4242"]))["4242"].status == SUCCEEDED
    await handler.cancel("4242")
    assert await handler.find_by_name("hpcbridge-x") is None
    return t


async def test_a_site_s_words_start_every_slurm_command():
    t = await run_every_command(HPCConfig(id="c", user="u", **SITE))
    sbatch, squeue, sacct, scancel, find_squeue, find_sacct = t.argv
    assert sbatch == ["/opt/slurm/bin/sbatch", "--qos=short", "--comment=two words",
                      "--parsable", "/w/x/job.sbatch"]
    assert squeue[:3] == ["squeue", "--clusters=c1", "-h"] and squeue[-1] == "%i|%T|%r|%M|%C|%j"
    assert sacct[:4] == ["sacct", "-M", "c1", "-X"] and "4242" in sacct
    assert scancel == ["scancel", "--clusters=c1", "4242"]
    assert find_squeue[:2] == ["squeue", "--clusters=c1"] and "hpcbridge-x" in find_squeue
    assert find_sacct[:3] == ["sacct", "-M", "c1"] and "--name=hpcbridge-x" in find_sacct
    script = t.files["/w/x/job.sbatch"].decode().splitlines()
    assert script[script.index("set -eo pipefail") - 2:script.index("set -eo pipefail")] == \
        SITE["batch_prelude"]


async def test_the_defaults_are_the_plain_programs():
    t = await run_every_command(HPCConfig(id="c", user="u"))
    assert [a[0] for a in t.argv] == ["sbatch", "squeue", "sacct", "scancel", "squeue", "sacct"]
    assert t.argv[0] == ["sbatch", "--parsable", "/w/x/job.sbatch"]
    assert t.argv[3] == ["scancel", "4242"]
    assert "module load" not in t.files["/w/x/job.sbatch"].decode()


async def test_an_unknown_id_stays_unknown_whatever_the_commands():
    handler = SlurmHandler(HPCConfig(id="c", **SITE), Recorder())
    assert (await handler.status_many(["77"]))["77"].status == UNKNOWN


@pytest.mark.parametrize("field", ["sbatch_command", "squeue_command", "sacct_command",
                                   "scancel_command"])
@pytest.mark.parametrize("value", ["", "   ", [], "sbatch 'unclosed"])
def test_a_command_needs_its_program(field, value):
    with pytest.raises(ValidationError):
        HPCConfig(id="c", **{field: value})
