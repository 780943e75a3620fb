"""In-process stand-ins for the unit tests of one class under faults: a scheduler handler
that wraps the real local one and can be told to fail, hang or answer with another job's
record, and counts what it was asked."""
from __future__ import annotations

import asyncio
from collections import Counter
from dataclasses import dataclass

from hpcbridge.connectors.handlers import SchedulerHandler


@dataclass(frozen=True)
class NamedState:
    """A scheduler record that carries its job's name (squeue %j, sacct JobName)."""

    scheduler_id: str
    status: str
    name: str | None
    raw_state: str = ""
    exit_code: int | None = None
    reason: str | None = None
    elapsed_seconds: int | None = None
    cpus: int | None = None


class FaultyHandler:
    """The real handler, except for the calls told otherwise in `faults`: a method name →
    an exception to raise, "hang" (sleeps until cancelled), or a callable giving the
    answer."""

    def __init__(self, inner):
        self.inner = inner
        self.faults: dict[str, object] = {}
        self.calls: Counter[str] = Counter()

    def __getattr__(self, name):
        return getattr(self.inner, name)

    async def _call(self, name, *args):
        self.calls[name] += 1
        fault = self.faults.get(name)
        if fault == "hang":
            await asyncio.sleep(3600)
        if isinstance(fault, BaseException):
            raise fault
        if callable(fault):
            return fault(*args)
        return await getattr(self.inner, name)(*args)

    async def submit(self, spec):
        return await self._call("submit", spec)

    async def status_many(self, ids):
        return await self._call("status_many", ids)

    async def cancel(self, scheduler_id):
        return await self._call("cancel", scheduler_id)

    async def find_by_name(self, name):
        return await self._call("find_by_name", name)

    # the batched calls go through the faulty single ones above (the base class's
    # defaults), so that a fault told to `submit` or `find_by_name` hits them too
    submit_scripts = SchedulerHandler.submit_scripts
    find_many_by_name = SchedulerHandler.find_many_by_name
    cancel_many = SchedulerHandler.cancel_many


def faulty(rt, hpc: str = "local") -> FaultyHandler:
    """Put a FaultyHandler in front of the runtime's handler of `hpc`."""
    handler = FaultyHandler(rt.handlers[hpc])
    rt.handlers[hpc] = handler
    return handler
