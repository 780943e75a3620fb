"""Prometheus metrics of the maintainer workers (issue #25)."""
from __future__ import annotations


def instrument_worker(rt, poller) -> None:
    """Called once in each worker process before its threads start."""
