"""The store's records of parameter sweeps: a sweep and its element jobs, created together.
A part of Store (server/store.py), the one database writer."""
from __future__ import annotations


class SweepRecords:
    """Mixed into Store: needs self.session()."""
