"""SSH connections and scheduler handlers: the only code that talks to an HPC.

Knows nothing of users, HTTP or the database.
"""
from .config import HPCConfig
from .errors import (
    CommandFailed,
    ConnectorError,
    HostKeyError,
    HPCUnavailable,
    PathOutsideWorkRoot,
    SchedulerError,
)
from .spec import JobSpec, render_batch_script
from .state import JobState

__all__ = [
    "HPCConfig", "JobSpec", "JobState", "render_batch_script",
    "ConnectorError", "HPCUnavailable", "HostKeyError", "CommandFailed",
    "PathOutsideWorkRoot", "SchedulerError",
]
