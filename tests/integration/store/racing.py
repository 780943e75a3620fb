"""Concurrent callers released together, for the store's race tests."""
from __future__ import annotations

import concurrent.futures
import threading


def race(n: int, fn):
    """fn(i) for i in range(n), in n threads released together; their results."""
    barrier = threading.Barrier(n)

    def go(i):
        barrier.wait(timeout=30)
        return fn(i)
    with concurrent.futures.ThreadPoolExecutor(n) as pool:
        return list(pool.map(go, range(n), timeout=120))
