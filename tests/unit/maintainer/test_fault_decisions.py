"""Issue 19's decisions, pure (maintainer/decisions.py): whose record a scheduler answer
is (a reused id) and what each class of error means for a job's step."""
from __future__ import annotations

from dataclasses import dataclass

import pytest

from hpcbridge.connectors.errors import (
    AuthenticationFailed,
    CommandInterrupted,
    HostKeyError,
    HPCUnavailable,
    JobFileError,
    RemoteFileNotFound,
    RemoteTimeout,
    SchedulerError,
    SchedulerUnavailable,
)
from hpcbridge.connectors.state import FAILED, RUNNING, SUBMITTED, SUCCEEDED, UNKNOWN, JobState
from hpcbridge.maintainer import decisions as D

NAME = "hpcbridge-abc"


@dataclass(frozen=True)
class NamedState:
    """A scheduler record that carries its job's name (as squeue %j / sacct JobName do)."""

    scheduler_id: str
    status: str
    name: str | None
    raw_state: str = ""


@pytest.mark.parametrize("status", [RUNNING, SUBMITTED, SUCCEEDED, FAILED])
def test_a_record_with_the_jobs_name_is_ours(status):
    assert D.record_verdict(NamedState("7", status, NAME), NAME) == D.OURS


@pytest.mark.parametrize("status", [RUNNING, SUBMITTED, SUCCEEDED, FAILED, UNKNOWN])
def test_a_record_with_another_name_means_the_id_was_reused(status):
    assert D.record_verdict(NamedState("7", status, "hpcbridge-other"), NAME) == D.REUSED


def test_no_record_or_not_known_yet_is_unseen():
    assert D.record_verdict(None, NAME) == D.UNSEEN
    assert D.record_verdict(NamedState("7", UNKNOWN, NAME), NAME) == D.UNSEEN
    assert D.record_verdict(JobState("7", UNKNOWN), NAME) == D.UNSEEN


def test_a_record_without_a_name_is_taken_as_ours():
    # a handler that reports no names: the id is all there is
    assert D.record_verdict(JobState("7", RUNNING, "RUNNING"), NAME) == D.OURS
    assert D.record_verdict(NamedState("7", RUNNING, None), NAME) == D.OURS


# what a lookup by name means (decisions.on_lookup): tests/unit/maintainer/test_lost_jobs.py


@pytest.mark.parametrize("exc,action", [
    (HPCUnavailable("down"), D.WAIT),
    (CommandInterrupted("lost"), D.WAIT),
    (RemoteTimeout("slow"), D.WAIT),
    (SchedulerUnavailable("Unable to contact slurm controller"), D.WAIT),
    (HostKeyError("changed"), D.WAIT_UNHEALTHY),
    (AuthenticationFailed("refused"), D.WAIT_UNHEALTHY),
    (JobFileError("/w/stdout.log", "permission denied"), D.FAIL),
    (RemoteFileNotFound("/w/result"), D.FAIL),  # also an OSError: the HPC's, not ours
    (SchedulerError("sbatch refused the job: invalid partition"), D.FAIL),
    (PermissionError(13, "Permission denied", "/data/results/x"), D.RETRY_LOCAL),
    (OSError(28, "No space left on device"), D.RETRY_LOCAL),
    (ValueError("bad"), D.FAIL),
])
def test_each_class_of_error_has_one_action(exc, action):
    assert D.on_error(exc) == action
