"""Typed connector errors, and `classify`: the one place a remote failure gets its meaning.

Three kinds, for the caller to act on (docs/reliability.md):
- `HPCUnavailable` and its subclasses: transient, a condition of the HPC (network, sshd,
  the scheduler's controller, a deadline passed). The job waits and is tried again.
- `SiteMisconfigured` (HostKeyError, AuthenticationFailed): the site's settings are wrong.
  Also an HPCUnavailable (jobs wait), marked `site_misconfigured = True`: an admin must act.
- The job's own (`JobFileError`, `SchedulerError`): permanent for this job, with a message
  a user understands. The HPC is fine.
"""
from __future__ import annotations

import asyncio
import errno
import sys

from hpcbridge.archive import UnsafePath


class ConnectorError(Exception):
    """Base of every error raised by this package."""

    #: True when only an administrator can fix it (host key, key file)
    site_misconfigured = False


class HPCUnavailable(ConnectorError):
    """The HPC cannot be reached now (network, sshd down, retry budget spent).

    A condition of the HPC, not of a job: callers wait and try again later.
    """


class CommandInterrupted(HPCUnavailable):
    """The connection was lost while a command ran: its outcome is unknown."""


class RemoteTimeout(CommandInterrupted):
    """A remote operation (command, SFTP call, channel wait, connect) passed its deadline
    and was abandoned: its outcome is unknown."""


class SchedulerUnavailable(HPCUnavailable):
    """The scheduler's controller does not answer (down, fail-over, socket timeout)."""


class SiteMisconfigured(HPCUnavailable):
    """The HPC's settings are wrong: jobs wait, the HPC is unhealthy until an admin acts."""

    site_misconfigured = True


class HostKeyError(SiteMisconfigured):
    """The host key is unknown or changed: refused, never retried."""


class AuthenticationFailed(SiteMisconfigured):
    """The key file is missing, unreadable, or not accepted by the server."""


class CommandFailed(ConnectorError):
    """A remote command ran and exited non-zero."""

    def __init__(self, argv, exit_status, stderr):
        self.argv, self.exit_status, self.stderr = list(argv), exit_status, stderr
        super().__init__(f"{argv[0]} exited {exit_status}: {stderr.strip()[:500]}")


class PathOutsideWorkRoot(ConnectorError, UnsafePath):
    """A path escaped the HPC's configured work root (the archive module's rule, applied to
    the work root: an `UnsafePath` that callers of the connectors also see as theirs)."""


class SchedulerError(ConnectorError):
    """The scheduler refused or misunderstood a request (the job's own: a limit, a
    partition, a bad id)."""


class JobFileError(ConnectorError):
    """A file of a job cannot be read or written: permission denied, not a regular file
    (a named pipe, a device, a socket, a symlink), missing where it must exist."""

    def __init__(self, path: str, why: str):
        self.path, self.why = path, why
        super().__init__(f"{path}: {why}")


class ResultsTooLarge(JobFileError):
    """A job's results pass a per-job limit of the HPC (max_result_bytes,
    max_result_files): nothing more is collected, the job fails with the limit named."""


class UnsafeSource(JobFileError):
    """What is to be copied to the HPC (an app's folder, a user's data) is or holds a
    symbolic link (it could lead out of its folder) or a special file: refused, never
    followed. (Stage-out skips such entries instead, and reports them.)"""


class RemoteFileNotFound(JobFileError, FileNotFoundError):
    """A remote file or folder is missing; also a FileNotFoundError, as LocalTransport's."""

    def __init__(self, path: str, why: str = "no such file or folder"):
        JobFileError.__init__(self, path, why)
        self.errno, self.strerror, self.filename = errno.ENOENT, why, path


# What Slurm's commands print when the controller, not the request, is the problem.
SCHEDULER_DOWN = (
    "unable to contact slurm controller",
    "socket timed out",
    "backup controller in standby mode",
    "connection refused",
    "connection timed out",
    "slurm_load_jobs error: unable to contact",
    "resource temporarily unavailable",
    "zero bytes were transmitted or received",
)


def scheduler_down(stderr: str) -> bool:
    """True when a scheduler command failed because its controller is unreachable."""
    text = stderr.lower()
    return any(words in text for words in SCHEDULER_DOWN)


def command_error(program: str, stderr: str, hpc: str = "") -> ConnectorError:
    """The error of a scheduler command that exited non-zero: transient when the controller
    is unreachable, else the scheduler's refusal (the job's own)."""
    text = stderr.strip()[:500] or "no message"
    where = f"{hpc}: " if hpc else ""
    if scheduler_down(text):
        return SchedulerUnavailable(f"{where}{program}: the scheduler does not answer: {text}")
    verb = "refused the job" if program == "sbatch" else "failed"
    return SchedulerError(f"{program} {verb}: {text}")


def classify(exc: BaseException, what: str = "", path: str = "") -> ConnectorError:
    """Any error of a remote operation as a ConnectorError; `what` names the operation (and
    the HPC) in messages, `path` the file it concerned."""
    if isinstance(exc, ConnectorError):
        return exc
    label = f"{what}: " if what else ""
    if isinstance(exc, (TimeoutError, asyncio.TimeoutError)):  # distinct before 3.11
        return RemoteTimeout(f"{label}no answer in time")
    # not imported here: the local handler needs no SSH, and raises no asyncssh error
    asyncssh = sys.modules.get("asyncssh")
    if asyncssh is not None and isinstance(exc, asyncssh.Error):
        return _asyncssh(asyncssh, exc, label, path)
    if isinstance(exc, (ConnectionError, EOFError)):
        return CommandInterrupted(f"{label}connection lost: {exc or type(exc).__name__}")
    if isinstance(exc, OSError):
        return _os(exc, label, path)
    return HPCUnavailable(f"{label}{type(exc).__name__}: {exc}")


def _asyncssh(asyncssh, exc, label: str, path: str) -> ConnectorError:
    if isinstance(exc, asyncssh.HostKeyNotVerifiable):
        return HostKeyError(f"{label}host key not verifiable: {exc.reason}")
    if isinstance(exc, asyncssh.PermissionDenied):
        return AuthenticationFailed(f"{label}key refused: {exc.reason}")
    if isinstance(exc, asyncssh.SFTPError):
        return _sftp(asyncssh, exc, label, path)
    reason = getattr(exc, "reason", "") or str(exc) or type(exc).__name__
    return CommandInterrupted(f"{label}connection lost: {reason}")


def _sftp(asyncssh, exc, label: str, path: str) -> ConnectorError:
    where = path or label.rstrip(": ") or "remote file"
    if isinstance(exc, asyncssh.SFTPNoSuchFile):
        return RemoteFileNotFound(where, exc.reason or "no such file or folder")
    if isinstance(exc, asyncssh.SFTPPermissionDenied):
        return JobFileError(where, "permission denied: the job's file cannot be read")
    if isinstance(exc, (asyncssh.SFTPConnectionLost, asyncssh.SFTPNoConnection)):
        return CommandInterrupted(f"{label}SFTP connection lost: {exc.reason}")
    if isinstance(exc, (asyncssh.SFTPNoSpaceOnFilesystem, asyncssh.SFTPQuotaExceeded)):
        return JobFileError(where, f"no space left (disk full or quota exceeded): {exc.reason}")
    return JobFileError(where, f"SFTP error: {exc.reason or type(exc).__name__}")


def _os(exc: OSError, label: str, path: str) -> ConnectorError:
    where = path or exc.filename or label.rstrip(": ") or "file"
    if isinstance(exc, FileNotFoundError):
        return RemoteFileNotFound(str(where), exc.strerror or "no such file or folder")
    if isinstance(exc, PermissionError):
        return JobFileError(str(where), "permission denied: the job's file cannot be read")
    if exc.errno in (errno.EHOSTUNREACH, errno.ENETUNREACH, errno.ECONNREFUSED,
                     errno.ECONNRESET, errno.ETIMEDOUT, errno.EPIPE):
        return HPCUnavailable(f"{label}{exc.strerror or exc}")
    return JobFileError(str(where), exc.strerror or str(exc))
