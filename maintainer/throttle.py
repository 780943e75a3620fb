"""At most once per interval: how often the poller hands a job to the pool or resends a
cancel. Each poll cycle sees every active job; without this, a job waiting for a slot
would be enqueued, and a pending cancel sent, on every cycle."""
from __future__ import annotations

import time


class Throttle:
    """Remembers when each key last went out (per process, monotonic clock)."""

    def __init__(self, every: float, memory: int = 100000):
        self.every = every
        self.memory = memory  # keys remembered before the old ones are forgotten
        self._sent: dict[str, float] = {}

    def due(self, key: str, force: bool = False) -> bool:
        """True (and remembered as sent now) if `key` did not go out in the last interval."""
        now = time.monotonic()
        if not force and now - self._sent.get(key, -float("inf")) < self.every:
            return False
        self._sent[key] = now
        if len(self._sent) > self.memory:
            self._sent = {k: t for k, t in self._sent.items() if now - t < self.every}
        return True

    def forget(self, key: str) -> None:
        """It did not go out after all: the next `due` says yes."""
        self._sent.pop(key, None)
