"""Prometheus metrics of the middleware (issue #25)."""
from __future__ import annotations


def routes(base_url: str) -> list[tuple]:
    """(pattern, handler) pairs under the middleware's base URL (/metrics)."""
    return []


def observe_request(handler) -> None:
    """Called once per finished request (the log function): latency by route and status."""
