"""Typed connector errors. The caller decides what a failure means for a job."""
from hpcbridge.archive import UnsafePath


class ConnectorError(Exception):
    """Base of every error raised by this package."""


class HPCUnavailable(ConnectorError):
    """The HPC cannot be reached now (network, sshd down, retry budget spent).

    A condition of the HPC, not of a job: callers wait and try again later.
    """


class HostKeyError(ConnectorError):
    """The host key is unknown or changed: refused, never retried."""


class AuthenticationFailed(ConnectorError):
    """The key file is missing, unreadable, or not accepted by the server."""


class CommandFailed(ConnectorError):
    """A remote command ran and exited non-zero."""

    def __init__(self, argv, exit_status, stderr):
        self.argv, self.exit_status, self.stderr = list(argv), exit_status, stderr
        super().__init__(f"{argv[0]} exited {exit_status}: {stderr.strip()[:500]}")


class CommandInterrupted(HPCUnavailable):
    """The connection was lost while a command ran: its outcome is unknown."""


class PathOutsideWorkRoot(ConnectorError, UnsafePath):
    """A path escaped the HPC's configured work root (the archive module's rule, applied to
    the work root: an `UnsafePath` that callers of the connectors also see as theirs)."""


class SchedulerError(ConnectorError):
    """The scheduler refused or misunderstood a request."""
