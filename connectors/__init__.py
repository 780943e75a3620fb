"""SSH connections and scheduler handlers: the only code that talks to an HPC.

Knows nothing of users, HTTP or the database.
"""
from .config import HPCConfig
from .errors import (
    AuthenticationFailed,
    CommandFailed,
    CommandInterrupted,
    ConnectorError,
    HostKeyError,
    HPCUnavailable,
    JobFileError,
    PathOutsideWorkRoot,
    RemoteFileNotFound,
    RemoteTimeout,
    SchedulerError,
    SchedulerUnavailable,
    SiteMisconfigured,
    classify,
)
from .spec import JobSpec, render_batch_script
from .state import JobState

__all__ = [
    "HPCConfig", "JobSpec", "JobState", "render_batch_script",
    "ConnectorError", "HPCUnavailable", "HostKeyError", "CommandFailed",
    "PathOutsideWorkRoot", "SchedulerError", "AuthenticationFailed", "CommandInterrupted",
    "JobFileError", "RemoteFileNotFound", "RemoteTimeout", "SchedulerUnavailable",
    "SiteMisconfigured", "classify",
]
