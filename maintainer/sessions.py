"""Interactive sessions on the HPC (issue #22): start, watch, stop, charge time.
The poller calls watch_sessions once per cycle of each HPC it holds."""
from __future__ import annotations


def watch_sessions(run, hpc) -> None:
    """One round of the sessions of `hpc`: run is the poller's CycleRuntime (run.run(coro,
    timeout) on the io loop, run.store, run.handlers ...); raises nothing."""
