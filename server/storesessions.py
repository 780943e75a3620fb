"""The store's records of interactive sessions: their lifecycle, events, activity and time charged against the session quota.
A part of Store (server/store.py), the one database writer."""
from __future__ import annotations


class SessionRecords:
    """Mixed into Store: needs self.session()."""
