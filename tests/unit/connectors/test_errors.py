"""errors.classify, the one place a remote failure gets its meaning, and the scheduler's
stderr read as "the controller does not answer" (transient) or a refusal (the job's own).
The same errors raised by the real stack are in tests/integration/connectors/test_faults.py."""
from __future__ import annotations

import asyncio
import errno

import asyncssh
import pytest

from hpcbridge.connectors.errors import (
    AuthenticationFailed,
    CommandInterrupted,
    ConnectorError,
    HostKeyError,
    HPCUnavailable,
    JobFileError,
    RemoteFileNotFound,
    RemoteTimeout,
    SchedulerError,
    SchedulerUnavailable,
    SiteMisconfigured,
    classify,
    command_error,
)

CASES = [
    (asyncssh.SFTPPermissionDenied("denied"), JobFileError, "permission denied"),
    (asyncssh.SFTPNoSuchFile("gone"), RemoteFileNotFound, "gone"),
    (asyncssh.SFTPFailure("odd"), JobFileError, "odd"),
    (asyncssh.SFTPNoSpaceOnFilesystem("full"), JobFileError, "no space left"),
    (asyncssh.SFTPConnectionLost("cut"), CommandInterrupted, "cut"),
    (asyncssh.ConnectionLost("reset"), CommandInterrupted, "reset"),
    (asyncssh.HostKeyNotVerifiable("changed"), HostKeyError, "changed"),
    (asyncssh.PermissionDenied("no key"), AuthenticationFailed, "no key"),
    (asyncssh.ChannelOpenError(1, "nope"), CommandInterrupted, "nope"),
    (asyncio.TimeoutError(), RemoteTimeout, "no answer"),
    (TimeoutError(), RemoteTimeout, "no answer"),
    (ConnectionResetError(errno.ECONNRESET, "reset by peer"), CommandInterrupted, "reset"),
    (OSError(errno.EHOSTUNREACH, "No route to host"), HPCUnavailable, "No route"),
    (PermissionError(errno.EACCES, "denied", "/w/x"), JobFileError, "permission denied"),
    (FileNotFoundError(errno.ENOENT, "none", "/w/x"), RemoteFileNotFound, "none"),
]


@pytest.mark.parametrize("exc, kind, words", CASES, ids=lambda c: type(c).__name__)
def test_every_remote_error_becomes_a_connector_error(exc, kind, words):
    error = classify(exc, "hpc1: op", "/w/job/stdout.log")
    assert type(error) is kind
    assert words in str(error)


def test_an_sftp_error_is_neither_an_oserror_nor_ours_until_classified():
    # why classify exists: nothing in the maintainer would catch it
    raw = asyncssh.SFTPPermissionDenied("denied")
    assert not isinstance(raw, (OSError, ConnectorError))
    error = classify(raw, path="/w/1/stdout.log")
    assert error.path == "/w/1/stdout.log" and not isinstance(error, HPCUnavailable)


def test_a_connector_error_is_kept_as_it_is():
    error = SchedulerError("sbatch refused the job: bad partition")
    assert classify(error) is error


def test_a_missing_remote_file_is_also_a_file_not_found_error():
    error = classify(asyncssh.SFTPNoSuchFile("gone"), path="/w/x")
    assert isinstance(error, FileNotFoundError) and error.errno == errno.ENOENT


def test_the_three_kinds_are_told_apart():
    transient = [HPCUnavailable, CommandInterrupted, RemoteTimeout, SchedulerUnavailable]
    for cls in transient:
        assert issubclass(cls, HPCUnavailable) and not cls.site_misconfigured
    for cls in (HostKeyError, AuthenticationFailed):  # jobs wait, an admin must act
        assert issubclass(cls, SiteMisconfigured) and issubclass(cls, HPCUnavailable)
        assert cls.site_misconfigured
    for cls in (JobFileError, SchedulerError):  # the job's own: it fails
        assert not issubclass(cls, HPCUnavailable) and not cls.site_misconfigured


@pytest.mark.parametrize("stderr", [
    "sbatch: error: Batch job submission failed: Unable to contact slurm controller "
    "(connect failure)",
    "squeue: error: slurm_load_jobs error: Unable to contact slurm controller",
    "sacct: error: Socket timed out on send/recv operation",
    "scancel: error: Slurm backup controller in standby mode",
    "squeue: error: Connection refused",
    "sbatch: error: Batch job submission failed: Resource temporarily unavailable",
    "sacct: error: Zero Bytes were transmitted or received",
])
def test_an_unreachable_controller_is_transient(stderr):
    error = command_error(stderr.split(":")[0], stderr, "hpc1")
    assert isinstance(error, SchedulerUnavailable)
    assert "hpc1" in str(error) and "does not answer" in str(error)


@pytest.mark.parametrize("stderr", [
    "sbatch: error: Batch job submission failed: Invalid partition name specified",
    "sbatch: error: Batch job submission failed: Requested time limit is invalid "
    "(missing or exceeds some limit)",
    "sbatch: error: Batch job submission failed: Job violates accounting/QOS policy",
])
def test_a_refused_request_is_the_jobs_own(stderr):
    error = command_error("sbatch", stderr)
    assert type(error) is SchedulerError
    assert str(error).startswith("sbatch refused the job: ")
