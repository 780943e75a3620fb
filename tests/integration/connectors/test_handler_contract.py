"""The scheduler handler contract, run against every handler.

SlurmHandler drives the stack's Slurm over its sshd; LocalHandler runs jobs as local
processes under tmp_path. Both must give the same answers to the same questions, so that
the embedded default behaves like a real cluster.
"""
from __future__ import annotations

import asyncio
import glob
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field

import pytest
from connector_helpers import file_size, make_config

from hpcbridge.connectors.config import HPCConfig
from hpcbridge.connectors.errors import PathOutsideWorkRoot
from hpcbridge.connectors.handlers import (
    LocalHandler,
    SchedulerHandler,
    SlurmHandler,
    create_handler,
)
from hpcbridge.connectors.spec import JobSpec, job_name
from hpcbridge.connectors.state import (
    CANCELLED,
    FAILED,
    RUNNING,
    SUBMITTED,
    SUCCEEDED,
    UNKNOWN,
)
from hpcbridge.lifecycle import FINAL

pytestmark = pytest.mark.timeout(300)


@dataclass
class Target:
    handler: SchedulerHandler
    submitted: list[str] = field(default_factory=list)

    @property
    def transport(self):
        return self.handler.transport

    async def spec(self, tag: str, command: str, **kw) -> JobSpec:
        root = await self.transport.resolve_work_root()
        return JobSpec(name=job_name(f"{tag}-{uuid.uuid4().hex}"), workdir=f"{root}/{tag}",
                       command=command, time_minutes=5, **kw)

    async def submit(self, tag: str, command: str, **kw) -> str:
        job = await self.handler.submit(await self.spec(tag, command, **kw))
        self.submitted.append(job)
        return job

    async def status(self, ids):
        """status_many, checked to cost at most two commands however many ids."""
        before = Counter(self.transport.commands.counts)
        states = await self.handler.status_many(ids)
        after = self.transport.commands.counts
        assert sum(after.values()) - sum(before.values()) <= 2, after - before
        assert set(states) == set(ids)
        return states

    async def wait(self, ids, done=None, deadline=90.0, interval=0.5):
        done = done or (lambda states: all(s.status in FINAL for s in states.values()))
        end = time.monotonic() + deadline
        seen = {i: [] for i in ids}
        while True:
            states = await self.status(ids)
            for i, s in states.items():
                if not seen[i] or seen[i][-1] != s.status:
                    seen[i].append(s.status)
            if done(states):
                return states, seen
            if time.monotonic() > end:
                pytest.fail(f"not done after {deadline}s: {states}")
            await asyncio.sleep(interval)

    async def read(self, path: str) -> bytes:
        return await self.transport.read_range(path, 0, 1 << 20)


@pytest.fixture(params=[pytest.param("slurm", marks=pytest.mark.stack), "local"])
async def target(request, tmp_path):
    if request.param == "slurm":
        config = make_config(request.getfixturevalue("ssh_target"), scheduler="slurm")
    else:
        config = HPCConfig(id="local", scheduler="local", work_root=str(tmp_path / "root"))
    handler = create_handler(config)
    assert isinstance(handler, SlurmHandler if request.param == "slurm" else LocalHandler)
    t = Target(handler)
    yield t
    try:
        for job in t.submitted:
            await handler.cancel(job)
        if request.param == "slurm":
            root = await handler.transport.resolve_work_root()
            assert "/hpcbridge-tests/" in root
            await handler.transport.run(["rm", "-rf", "--", root])
    finally:
        await handler.close()


async def test_submit_runs_the_command_in_its_workdir(target):
    job = await target.submit("basic", "pwd > where.txt; echo out; echo err >&2")
    assert job.isdigit()
    states, seen = await target.wait([job])
    state = states[job]
    assert (state.status, state.exit_code) == (SUCCEEDED, 0)
    assert state.elapsed_seconds is not None and state.elapsed_seconds >= 0
    assert set(seen[job]) <= {SUBMITTED, RUNNING, UNKNOWN, SUCCEEDED}
    root = await target.transport.resolve_work_root()
    assert await target.read("basic/where.txt") == f"{root}/basic\n".encode()
    assert await target.read("basic/stdout.log") == b"out\n"
    assert await target.read("basic/stderr.log") == b"err\n"
    # the answer stays the same once final
    assert (await target.status([job]))[job].status == SUCCEEDED


async def test_exit_codes(target):
    ids = {code: await target.submit(f"exit{code}", f"exit {code}") for code in (0, 3, 42)}
    states, seen = await target.wait(list(ids.values()))
    assert states[ids[0]].status == SUCCEEDED
    for code in (3, 42):
        state = states[ids[code]]
        assert (state.status, state.exit_code) == (FAILED, code)
        assert state.reason == f"exit code {code}"
        assert SUCCEEDED not in seen[ids[code]]


async def test_killed_by_a_signal_is_a_failure(target):
    job = await target.submit("killed", "kill -9 $$")
    states, _ = await target.wait([job])
    assert states[job].status == FAILED
    assert states[job].exit_code == 128 + 9


async def test_a_failing_line_stops_the_script(target):
    job = await target.submit("stops", "false\necho after > after.txt")
    states, _ = await target.wait([job])
    assert (states[job].status, states[job].exit_code) == (FAILED, 1)
    assert await file_size(target.transport, "stops/after.txt") is None


async def test_status_many_is_batched_and_never_guesses(target):
    ids = [await target.submit(f"many{i}", "true") for i in range(6)]
    unknown = "999999999"
    states, _ = await target.wait(ids)
    assert all(states[i].status == SUCCEEDED for i in ids)
    # a job nobody knows is unknown, never succeeded; duplicates are answered once
    answer = await target.status([*ids, unknown, ids[0]])
    assert set(answer) == {*ids, unknown}
    assert answer[unknown].status == UNKNOWN
    assert await target.handler.status_many([]) == {}


async def test_find_by_name(target):
    spec = await target.spec("named", "true")
    assert await target.handler.find_by_name(spec.name) is None
    job = await target.handler.submit(spec)
    target.submitted.append(job)
    assert await target.handler.find_by_name(spec.name) == job
    assert await target.handler.find_by_name(job_name(uuid.uuid4().hex)) is None
    await target.wait([job])
    assert await target.handler.find_by_name(spec.name) == job  # also after the end


async def test_cancel_a_running_job(target):
    job = await target.submit("cancel", "sleep 60; echo finished > done.txt")
    await target.wait([job], lambda s: s[job].status == RUNNING, deadline=60, interval=0.2)
    await target.handler.cancel(job)
    states, _ = await target.wait([job], deadline=60)
    assert states[job].status == CANCELLED
    assert await file_size(target.transport, "cancel/done.txt") is None
    await target.handler.cancel(job)  # twice is harmless
    assert (await target.status([job]))[job].status == CANCELLED


HOSTILE = {
    "P_SUBST": "$(touch {canary}-subst)",
    "P_SEMI": "; touch {canary}-semi; rm -rf ~",
    "P_BACKTICK": "`touch {canary}-backtick`",
    "P_NEWLINE": "a\ntouch {canary}-newline\nb",
    "P_QUOTES": "it's \"$(touch {canary}-q)\" '`id`'",
    "P_VARS": "$HOME ${PATH} $$ \\",
    "P_EMPTY": "",
}


async def test_environment_values_arrive_verbatim(target):
    canary = f"/tmp/pwned-{uuid.uuid4().hex}"
    values = {k: v.replace("{canary}", canary) for k, v in HOSTILE.items()}
    job = await target.submit("env", "env -0 > env.out", environment=values)
    states, _ = await target.wait([job])
    assert states[job].status == SUCCEEDED
    env = {}
    for item in (await target.read("env/env.out")).split(b"\0"):
        if item:
            key, _, value = item.decode().partition("=")
            env[key] = value
    for key, value in values.items():
        assert env.get(key) == value, key
    assert glob.glob(canary + "*") == []


async def test_transport_files(target, tmp_path):
    """The file side of the contract: what staging and log tails rely on."""
    t = target.transport
    src = tmp_path / "src"
    (src / "sub" / "deeper").mkdir(parents=True)
    (src / "empty-dir").mkdir()
    files = {"a.txt": b"alpha\n", "sub/b.bin": bytes(range(256)) * 40,
             "sub/deeper/c.csv": b"x,y\n", "empty": b"", "sp ace.txt": b"s\n"}
    for rel, data in files.items():
        (src / rel).write_bytes(data)
    await t.upload(str(src), "st/in")
    listing = {e.path: (e.size, e.is_dir) for e in await t.listdir("st/in")}
    assert listing == {**{rel: (len(d), False) for rel, d in files.items()},
                       "sub": (0, True), "sub/deeper": (0, True), "empty-dir": (0, True)}
    await t.download("st/in", str(tmp_path / "back"))
    for rel, data in files.items():
        assert (tmp_path / "back" / rel).read_bytes() == data
    assert (tmp_path / "back" / "empty-dir").is_dir()
    assert await file_size(t, "st/in/sub/b.bin") == 256 * 40
    assert await file_size(t, "st/in/none") is None
    assert await t.read_range("st/in/a.txt", 2, 2) == b"ph"
    assert await t.read_range("st/in/a.txt", 100, 2) == b""
    assert await t.read_range("st/in/none", 0, 2) == b""
    assert await t.read_ranges([("st/in/a.txt", 0, 1), ("st/in/none", 0, 1)]) == [b"a", b""]
    # what is missing is missing, the same way on every transport
    with pytest.raises(FileNotFoundError):
        await t.listdir("st/none")
    with pytest.raises(FileNotFoundError):
        await t.download("st/none", str(tmp_path / "none"))
    with pytest.raises(FileNotFoundError):
        await t.upload(str(tmp_path / "no-such-local"), "st/x")
    for bad in ["../x", "/etc/passwd", "st/../../x"]:
        with pytest.raises(PathOutsideWorkRoot):
            await t.read_range(bad, 0, 1)
        with pytest.raises(PathOutsideWorkRoot):
            await t.upload(str(src / "a.txt"), bad)
    await t.rmtree("st")
    assert await file_size(t, "st") is None
    assert await t.listdir(".") == []
