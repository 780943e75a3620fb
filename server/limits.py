"""Bounds on what one client can make the middleware hold: request bodies, concurrent
event streams and uploads per user (see docs/security.md, "The middleware")."""
from __future__ import annotations

from collections import Counter
from contextlib import contextmanager

from .errors import TooManyRequests

# A request body is read only up to this before its sender is known; the upload route
# raises its own bound after authentication.
DEFAULT_MAX_BODY_BYTES = 1 << 20


class Slots:
    """At most `limit` concurrent holders per user (event streams, uploads)."""

    def __init__(self, what: str, limit: int):
        self.what, self.limit = what, limit
        self.held: Counter[str] = Counter()

    def take(self, user: str) -> None:
        """Hold one slot of `user`, or raise TooManyRequests (429)."""
        if self.held[user] >= self.limit:
            raise TooManyRequests(f"too many {self.what} open at once: at most {self.limit} "
                                  "per user; close one and try again")
        self.held[user] += 1

    def give(self, user: str) -> None:
        self.held[user] -= 1
        if self.held[user] <= 0:
            del self.held[user]

    @contextmanager
    def hold(self, user: str):
        self.take(user)
        try:
            yield
        finally:
            self.give(user)
