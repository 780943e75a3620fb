"""Deadlines for remote operations: nothing the connectors await on the HPC waits forever.

Written for Python 3.10 too (no asyncio.timeout): `within` bounds one operation, and
`while_progressing` bounds a transfer by the time it makes no progress, so a large upload
may take as long as it moves.
"""
from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

from .errors import RemoteTimeout

T = TypeVar("T")


async def within(aw: Awaitable[T], limit: float, what: str) -> T:
    """`aw`'s result, or RemoteTimeout (the operation cancelled) after `limit` seconds."""
    try:
        return await asyncio.wait_for(aw, limit)
    except asyncio.TimeoutError as exc:
        raise RemoteTimeout(f"{what}: no answer in {limit:g} s") from exc


async def while_progressing(start: Callable[[Callable[..., None]], Awaitable[T]],
                            limit: float, what: str) -> T:
    """Run `start(progress)`, a transfer that calls progress(...) as it moves; abandon it
    (cancelled, RemoteTimeout) when nothing moved for `limit` seconds."""
    loop = asyncio.get_running_loop()
    last = loop.time()

    def progress(*_) -> None:
        nonlocal last
        last = loop.time()

    task = asyncio.ensure_future(start(progress))
    try:
        while True:
            await asyncio.wait({task}, timeout=max(0.0, last + limit - loop.time()))
            if task.done():
                return task.result()
            if loop.time() - last >= limit:
                raise RemoteTimeout(f"{what}: no progress for {limit:g} s")
    finally:
        if not task.done():
            task.cancel()
            task.add_done_callback(_consume)


def _consume(task: asyncio.Future) -> None:
    """Retrieve an abandoned task's outcome, so asyncio does not log it as lost."""
    if not task.cancelled():
        task.exception()
