"""Helpers of the connector tests against the real stack (the fixtures are in conftest.py):
pool configs, job specs, status rounds checked for their cost, waiting for end states."""
from __future__ import annotations

import asyncio
import socket
import time
import uuid
from collections import Counter

import pytest

from hpcbridge.connectors.config import HPCConfig
from hpcbridge.connectors.pool import ConnectorPool
from hpcbridge.connectors.spec import JobSpec, job_name
from hpcbridge.lifecycle import FINAL


def make_config(ssh, **overrides) -> HPCConfig:
    values = dict(id="stack", host=ssh.host, port=ssh.port, user=ssh.user, key_file=ssh.key,
                  known_hosts=ssh.known_hosts, connections=2, channels_per_connection=8,
                  connect_retries=4, commands_per_minute=100_000, command_timeout=60,
                  work_root=f"~/hpcbridge-tests/{uuid.uuid4().hex}", partitions=["debug"])
    values.update(overrides)
    return HPCConfig(**values)


class Tracked(list):
    """Slurm job ids a test submitted: scancel'd at the end whatever happened."""


async def cleanup(p):
    """Scancel what a test submitted and remove its work root."""
    tracked = p.tracked
    if p._closed:  # a test closed its pool: clean up through a fresh one
        p = ConnectorPool(p.config)
    try:
        if tracked:
            await asyncio.wait_for(p.run(["scancel", *tracked]), 60)
        root = await asyncio.wait_for(p.resolve_work_root(), 30)
        assert "/hpcbridge-tests/" in root
        await asyncio.wait_for(p.run(["rm", "-rf", "--", root]), 60)
    finally:
        await p.close()


async def spec(pool, tag, command, **kw) -> JobSpec:
    root = await pool.resolve_work_root()
    return JobSpec(name=job_name(f"{tag}-{uuid.uuid4().hex[:8]}"), workdir=f"{root}/{tag}",
                   command=command, partition="debug", time_minutes=kw.pop("time_minutes", 5),
                   **kw)


async def submit(handler, pool, tag, command, **kw) -> str:
    job = await handler.submit(await spec(pool, tag, command, **kw))
    pool.tracked.append(job)
    return job


def count_delta(pool, before: Counter) -> Counter:
    return Counter({k: v - before.get(k, 0) for k, v in pool.commands.counts.items()
                    if v - before.get(k, 0)})


async def status_round(handler, ids):
    """One status_many call, checked to cost one squeue and at most one sacct."""
    before = Counter(handler.transport.commands.counts)
    states = await handler.status_many(ids)
    delta = count_delta(handler.transport, before)
    assert delta["squeue"] == 1, delta
    assert delta["sacct"] <= 1, delta
    assert sum(delta.values()) <= 2, delta
    assert set(states) == set(ids)
    return states


async def wait_until(handler, ids, done, deadline, interval=1.0):
    """Poll status_many until done(states) (sacct lags ~4 s behind the controller)."""
    end = time.monotonic() + deadline
    seen: dict[str, list[str]] = {i: [] for i in ids}
    while True:
        states = await status_round(handler, ids)
        for i, s in states.items():
            if not seen[i] or seen[i][-1] != s.status:
                seen[i].append(s.status)
        if done(states):
            return states, seen
        if time.monotonic() > end:
            pytest.fail(f"not done after {deadline}s: "
                        f"{ {i: (s.raw_state, s.status) for i, s in states.items()} }")
        await asyncio.sleep(interval)


def all_final(states):
    return all(s.status in FINAL for s in states.values())


async def file_size(transport, path: str) -> int | None:
    """A file's size (0 for a folder), None when it is missing: through listdir, the one
    way the transports list files."""
    parent, _, name = path.rstrip("/").rpartition("/")
    try:
        entries = await transport.listdir(parent or ".")
    except FileNotFoundError:
        return None
    return next((e.size for e in entries if e.path == name), None)


def open_connections(pool) -> int:
    return sum(1 for c in pool._conns if c is not None and not c.is_closed())


def port_open(ssh) -> bool:
    try:
        socket.create_connection((ssh.host, ssh.port), timeout=1).close()
        return True
    except OSError:
        return False
