"""The store's queries and repairs for operators (issue #25): stuck jobs, usage per user,
requeueing a job stuck in staging or finishing.
A part of Store (server/store.py), the one database writer."""
from __future__ import annotations


class AdminRecords:
    """Mixed into Store: needs self.session()."""
