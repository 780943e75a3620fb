"""Routes of parameter sweeps: one request, many element jobs (issue #24)."""
from __future__ import annotations


def routes(prefix: str) -> list[tuple]:
    """(pattern, handler) pairs under the API prefix (e.g. /api/v1)."""
    return []
