"""The SDK's calls for parameter sweeps: client.sweep(app, params=[...]) -> Sweep.
Mixed into hpcbridge.client.Client (uses its _json/_request)."""
from __future__ import annotations


class SweepCalls:
    pass
