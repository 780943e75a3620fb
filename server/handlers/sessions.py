"""Routes of interactive sessions: start, list, stop, keepalive, and the proxy to the running service (issue #22)."""
from __future__ import annotations


def routes(prefix: str) -> list[tuple]:
    """(pattern, handler) pairs under the API prefix (e.g. /api/v1)."""
    return []
