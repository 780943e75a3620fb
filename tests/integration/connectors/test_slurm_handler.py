"""SlurmHandler through the real test stack: end states from squeue and accounting,
cancel, idempotent submission, hostile values, and a site's command lines and batch
prelude (HPCConfig) seen by the real sbatch. Fixtures: conftest.py."""
from __future__ import annotations

import asyncio
import glob
import time
import uuid

import pytest
from connector_helpers import (
    Tracked,
    all_final,
    cleanup,
    file_size,
    make_config,
    spec,
    status_round,
    submit,
    wait_until,
)

from hpcbridge.connectors.handlers import SlurmHandler, create_handler
from hpcbridge.connectors.spec import job_name, render_batch_script
from hpcbridge.connectors.state import CANCELLED, FAILED, RUNNING, SUBMITTED, SUCCEEDED
from hpcbridge.connectors.transport import CommandResult

pytestmark = [pytest.mark.stack, pytest.mark.timeout(600)]


# --- 1. true end states after a job left squeue -------------------------------------------
@pytest.mark.slow
async def test_final_states_come_from_accounting(ssh, pool, handler):
    ok = await submit(handler, pool, "ok", "echo fine")
    three = await submit(handler, pool, "three", "echo failing >&2; exit 3")
    killed = await submit(handler, pool, "killed", "kill -9 $$")
    sleeper = await submit(handler, pool, "sleeper", "sleep 60; echo too-late > done.txt")
    await wait_until(handler, [sleeper], lambda s: s[sleeper].status == RUNNING, 60, 0.3)
    await handler.cancel(sleeper)
    ids = [ok, three, killed, sleeper]
    states, seen = await wait_until(handler, ids, all_final, deadline=120)

    # they have left squeue: the answers came from sacct
    listed = (await pool.run(["squeue", "-h", "-u", ssh.user, "-o", "%i"])).check().stdout
    assert not set(listed.split()) & set(ids)

    assert (states[ok].status, states[ok].exit_code) == (SUCCEEDED, 0)
    assert states[three].status == FAILED
    assert states[three].exit_code == 3
    assert states[three].reason == "exit code 3"
    assert states[killed].status == FAILED
    assert "signal 9" in states[killed].reason
    assert states[sleeper].status == CANCELLED
    assert states[sleeper].raw_state.startswith("CANCELLED")
    assert states[sleeper].elapsed_seconds < 60
    assert await file_size(pool, "sleeper/done.txt") is None
    # a failed job was never reported as succeeded on its way (sacct lag → unknown)
    for job in (three, killed, sleeper):
        assert SUCCEEDED not in seen[job], seen[job]
    assert await pool.read_range("three/stderr.log", 0, 100) == b"failing\n"
    assert await pool.read_range("ok/stdout.log", 0, 100) == b"fine\n"


@pytest.mark.slow
async def test_timeout_is_a_failure_with_its_reason(pool, handler):
    job = await submit(handler, pool, "timeout", "sleep 600", time_minutes=1)
    states, seen = await wait_until(handler, [job], all_final, deadline=200, interval=3)
    assert states[job].status == FAILED
    assert states[job].raw_state == "TIMEOUT"
    assert states[job].reason.startswith("TIMEOUT")
    assert SUCCEEDED not in seen[job]


# --- 2. cancel, pending and running --------------------------------------------------------
async def test_cancel_pending_and_running(pool, handler):
    # pending: held at submission (a job the scheduler will not start by itself)
    held_spec = await spec(pool, "held", "echo ran > ran.txt")
    script = f"{held_spec.workdir}/job.sbatch"
    await pool.write_bytes(script, render_batch_script(held_spec).encode(), 0o700)
    held = (await pool.run(["sbatch", "--hold", "--parsable", script])).check().stdout.strip()
    pool.tracked.append(held)
    running = await submit(handler, pool, "running", "sleep 60; echo ran > ran.txt")
    states, _ = await wait_until(handler, [held, running],
                                 lambda s: s[running].status == RUNNING, 60, 0.3)
    assert states[held].status == SUBMITTED
    assert states[held].raw_state == "PENDING"
    assert states[held].reason == "JobHeldUser"

    await handler.cancel(held)
    await handler.cancel(running)
    states, _ = await wait_until(handler, [held, running], all_final, deadline=60)
    assert states[held].status == CANCELLED
    assert states[running].status == CANCELLED
    assert await file_size(pool, "held/ran.txt") is None
    assert await file_size(pool, "running/ran.txt") is None
    # cancelling an ended job is harmless
    await handler.cancel(running)
    assert (await status_round(handler, [running]))[running].status == CANCELLED


async def test_find_by_name_makes_submission_idempotent(pool, handler):
    s = await spec(pool, "named", "true")
    assert await handler.find_by_name(s.name) is None
    job = await handler.submit(s)
    pool.tracked.append(job)
    assert await handler.find_by_name(s.name) == job


class _PurgedFromController:
    """The pool, except that squeue knows nothing: a job past slurmctld's MinJobAge."""

    def __init__(self, pool):
        self._pool = pool

    def __getattr__(self, name):
        return getattr(self._pool, name)

    async def run(self, argv, **kw):
        if argv[0] == "squeue":
            self._pool.commands.record(argv)
            return CommandResult(tuple(argv), 0, "", "")
        return await self._pool.run(argv, **kw)


async def test_jobs_purged_from_the_controller_are_found_in_accounting(pool, handler):
    s = await spec(pool, "purged", "exit 5")
    job = await handler.submit(s)
    pool.tracked.append(job)
    await wait_until(handler, [job], all_final, deadline=60)
    purged = SlurmHandler(pool.config, _PurgedFromController(pool))
    states, _ = await wait_until(purged, [job], all_final, deadline=30)
    assert (states[job].status, states[job].exit_code) == (FAILED, 5)
    # `sacct --name -S …` was seen to lag `sacct -j` by up to ~5 s more: ask until found
    end = time.monotonic() + 30
    while (found := await purged.find_by_name(s.name)) is None and time.monotonic() < end:
        await asyncio.sleep(1)
    assert found == job
    assert await purged.find_by_name(job_name(uuid.uuid4().hex)) is None


# --- 3. hostile parameter values through Slurm ---------------------------------------------
def hostile_values(canary: str) -> dict[str, str]:
    return {
        "P_SUBST": f"$(touch {canary}-subst)",
        "P_SEMI": f"; touch {canary}-semi; rm -rf ~",
        "P_BACKTICK": f"`touch {canary}-backtick`",
        "P_NEWLINE": f"first\ntouch {canary}-newline\nlast",
        "P_SQUOTE": f"it's '$(touch {canary}-sq)'",
        "P_DQUOTE": f'say "$(touch {canary}-dq)" "`id`"',
        "P_MIXED": f"'\"`$(touch {canary}-mixed)`\"'\\$HOME\\\n&& touch {canary}-and",
        "P_VARS": "$HOME ${PATH} $$ $? !! \\",
        "P_GLOB": "* ? [a-z] ~root",
        "P_EMPTY": "",
        "P_UNICODE": "héllo ✓ \t tab",
        "P_DIRECTIVE": "x\n#SBATCH --partition=evil\n#SBATCH --wrap=id",
    }


def read_env0(data: bytes) -> dict[str, str]:
    env = {}
    for item in data.split(b"\0"):
        if item:
            key, _, value = item.decode().partition("=")
            env[key] = value
    return env


async def test_hostile_values_arrive_verbatim_through_slurm(pool, handler):
    canary = f"/tmp/pwned-{uuid.uuid4().hex}"
    values = hostile_values(canary)
    job = await submit(handler, pool, "hostile", "env -0 > env.out", environment=values)
    states, _ = await wait_until(handler, [job], all_final, deadline=90)
    assert states[job].status == SUCCEEDED, states[job]
    env = read_env0(await pool.read_range("hostile/env.out", 0, 1 << 20))
    for key, value in values.items():
        assert env.get(key) == value, key
    assert env.get("SLURM_JOB_ID") == job  # it really ran under Slurm
    assert env.get("SLURM_JOB_PARTITION") == "debug"
    # jobs run as hpcuser on this very machine: a run substitution would leave a file
    assert glob.glob(canary + "*") == []


# --- 4. a site's command lines and batch prelude -------------------------------------------
SITE = {
    "sbatch_command": "/usr/bin/sbatch --comment=site-sbatch-words",
    "squeue_command": "squeue --noconvert",
    "sacct_command": "sacct --noconvert",
    "scancel_command": "scancel --quiet",
    # a directive sbatch must read (it sets a variable in the job), then a shell line
    "batch_prelude": ["#SBATCH --export=ALL,SITE_DIRECTIVE=read-by-sbatch",
                      "export SITE_SETUP=ran-before-the-job"],
}


@pytest.fixture
async def site_handler(ssh):
    handler = create_handler(make_config(ssh, **SITE))
    handler.transport.tracked = Tracked()
    yield handler
    await cleanup(handler.transport)


async def test_a_site_s_prelude_and_command_lines_reach_the_real_slurm(site_handler):
    handler, pool = site_handler, site_handler.transport
    s = await spec(pool, "site", 'echo "$SITE_DIRECTIVE $SITE_SETUP"; sleep 2')
    assert await handler.find_by_name(s.name) is None
    job = await handler.submit(s)
    pool.tracked.append(job)
    assert await handler.find_by_name(s.name) == job
    # the sbatch words of the site: the option is on the job
    comment = (await pool.run(["squeue", "-h", "-t", "all", "-j", job, "-o", "%k"])).check()
    assert comment.stdout.strip() == "site-sbatch-words"
    states, _ = await wait_until(handler, [job], all_final, deadline=90, interval=0.5)
    assert states[job].status == SUCCEEDED, states[job]
    assert await pool.read_range("site/stdout.log", 0, 1000) == \
        b"read-by-sbatch ran-before-the-job\n"
    counts = pool.commands.counts
    assert counts["/usr/bin/sbatch"] == 1 and counts["sbatch"] == 0
    await handler.cancel(job)  # scancel --quiet of an ended job: harmless


async def test_cancel_by_name_leaves_no_job_of_that_name(pool, handler):
    """Two Slurm jobs under one name (a submit repeated after a lost answer): one scancel
    --name ends both, and their records carry that name."""
    job_spec = await spec(pool, "twice", "sleep 300")
    ids = [await handler.submit(job_spec) for _ in range(2)]
    pool.tracked.extend(ids)
    await handler.cancel_by_name(job_spec.name)
    states, _ = await wait_until(handler, ids, all_final, deadline=60)
    assert {states[i].status for i in ids} == {CANCELLED}, states
    # accounting may not know the name yet ("allocation" reads as ""): never another
    assert {states[i].name for i in ids} <= {job_spec.name, None, ""}
