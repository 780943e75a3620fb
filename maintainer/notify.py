"""Notifications when a job ends (issue #25): the outbox rows the store wrote with the final
transition, sent as signed webhooks and mails, retried with back-off, never blocking a
worker's other work."""
from __future__ import annotations

import threading


def deliver_until_stopped(rt, stop: threading.Event) -> None:
    """A worker thread: send due notifications until `stop`."""
