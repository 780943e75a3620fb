"""connectors/deadline.py and the pool's wait for a free channel: nothing waits forever.
The deadlines against the real sshd are in tests/integration/connectors/test_faults.py."""
from __future__ import annotations

import asyncio
import time

import pytest

from hpcbridge.connectors.config import HPCConfig
from hpcbridge.connectors.deadline import while_progressing, within
from hpcbridge.connectors.errors import RemoteTimeout
from hpcbridge.connectors.pool import ConnectorPool


async def test_within_abandons_an_operation_at_its_deadline():
    cancelled = asyncio.Event()

    async def hang():
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            cancelled.set()
            raise
    start = time.monotonic()
    with pytest.raises(RemoteTimeout, match="op: no answer in 0.1 s"):
        await within(hang(), 0.1, "op")
    assert time.monotonic() - start < 1 and cancelled.is_set()
    assert await within(asyncio.sleep(0, "done"), 1, "op") == "done"


async def test_a_transfer_lives_as_long_as_it_progresses():
    async def moving(progress):
        for _ in range(10):  # 0.5 s in all, never 0.2 s without progress
            await asyncio.sleep(0.05)
            progress("a", "b", 1, 10)
        return "copied"
    assert await while_progressing(moving, 0.2, "copy") == "copied"


async def test_a_stalled_transfer_is_abandoned():
    async def stalls(progress):
        progress("a", "b", 1, 10)
        await asyncio.sleep(60)
    start = time.monotonic()
    with pytest.raises(RemoteTimeout, match="no progress for 0.2 s"):
        await while_progressing(stalls, 0.2, "copy")
    assert time.monotonic() - start < 1


def pool(**kw) -> ConnectorPool:
    return ConnectorPool(HPCConfig(id="t", host="127.0.0.1", port=9, **kw))


async def test_waiting_for_a_free_channel_has_a_deadline_and_loses_no_slot():
    p = pool(connections=1, channels_per_connection=2, command_timeout=0.2)
    async with p._channel_slot(), p._channel_slot():  # every channel held
        start = time.monotonic()
        with pytest.raises(RemoteTimeout, match="no free channel in 0.2 s"):
            async with p._channel_slot():
                pass
        assert time.monotonic() - start < 1
    assert p._slots.qsize() == 2  # both tokens back, none lost to the abandoned wait


async def test_a_cancelled_wait_for_a_channel_loses_no_slot():
    p = pool(connections=1, channels_per_connection=1, command_timeout=5)
    async with p._channel_slot():
        waiter = asyncio.ensure_future(p._take_slot(5))
        await asyncio.sleep(0.05)
        waiter.cancel()
    await asyncio.sleep(0.05)
    assert p._slots.qsize() == 1


def test_a_login_node_down_again_and_again_is_tried_less_often():
    from hpcbridge.connectors.pool import _DOWN_COOLDOWN_MAX, _down_pause
    pauses = [_down_pause(n) for n in range(1, 8)]
    assert pauses[0] == 2.0 and pauses[1] == 4.0
    assert pauses == sorted(pauses) and pauses[-1] == _DOWN_COOLDOWN_MAX
