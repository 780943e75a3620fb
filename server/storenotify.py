"""The store's records of the notification outbox: messages about a job's end, claimed, sent and retried.
A part of Store (server/store.py), the one database writer."""
from __future__ import annotations


class NotificationRecords:
    """Mixed into Store: needs self.session()."""

    def add_notifications(self, s, job_id: str, status: str, message: str) -> None:
        """Called by Store.transition inside its transaction when a job ends: queue the
        messages its owner asked for (Job.notify) as outbox rows."""
