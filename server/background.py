"""A sender thread: what a request or a store write hands over is sent to Redis by one thread
of its own, so the caller never waits on a round trip; whatever arrives while one batch is
sent goes in the next, together (16 POSTs at once cost one Redis round trip, not 16)."""
from __future__ import annotations

import logging
import threading
from collections.abc import Callable

log = logging.getLogger("hpcbridge.server")


class Sender:
    """`put(item)` from any thread; `send(items)` is called on the sender thread with every
    item that arrived since the last call, in order. `send` may raise: it is logged. At most
    `limit` items wait: past it `put` answers False (the caller counts it dropped)."""

    def __init__(self, send: Callable[[list], None], name: str, limit: int = 10_000):
        self._send, self.name, self.limit = send, name, limit
        self._items: list = []
        self._busy = False
        self._closed = False
        self._ready = threading.Condition()
        self._thread: threading.Thread | None = None

    def put(self, item) -> bool:
        with self._ready:
            if self._closed or len(self._items) >= self.limit:
                return False
            self._items.append(item)
            if self._thread is None:  # started on first use: no thread in idle processes
                self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
                self._thread.start()
            self._ready.notify_all()
        return True

    def _run(self) -> None:
        while True:
            with self._ready:
                while not self._items and not self._closed:
                    self._ready.wait()
                if not self._items:  # closed and drained
                    return
                items, self._items, self._busy = self._items, [], True
            try:
                self._send(items)
            except Exception:  # the sender's own handling failed: never kill the thread
                log.exception("%s: %d item(s) not sent", self.name, len(items))
            finally:
                with self._ready:
                    self._busy = False
                    self._ready.notify_all()

    def flush(self, timeout: float) -> bool:
        """Wait (at most `timeout` s) until everything handed over so far was sent."""
        with self._ready:
            return self._ready.wait_for(lambda: not self._items and not self._busy, timeout)

    def close(self, timeout: float = 2.0) -> None:
        """Send what waits (at most `timeout` s), then stop the thread."""
        with self._ready:
            self._closed = True
            self._ready.notify_all()
            thread = self._thread
        if thread is not None:
            thread.join(timeout)
