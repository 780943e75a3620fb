"""What a scheduler's answer means for a job (maintainer/decisions.py, pure): every end goes
through `finishing`, accounting lag is never an outcome, and the final messages."""
import pytest

from hpcbridge.connectors.state import (
    CANCELLED,
    FAILED,
    RUNNING,
    SUBMITTED,
    SUCCEEDED,
    UNKNOWN,
    JobState,
    parse_sacct,
    parse_squeue,
)
from hpcbridge.maintainer import decisions as D


def st(status, raw="", **kw):
    return JobState("42", status, raw, **kw)


@pytest.mark.parametrize("current", ["submitted", "running"])
def test_unknown_and_pending_change_nothing(current):
    # "not known yet" (sacct lag, a job missing from both) is never taken as an outcome
    assert D.on_scheduler_state(current, st(UNKNOWN), "slurm").status is None
    assert D.on_scheduler_state(current, st(SUBMITTED, "PENDING"), "slurm").status is None


def test_running_is_entered_once():
    d = D.on_scheduler_state("submitted", st(RUNNING, "RUNNING"), "slurm")
    assert d.status == "running" and "RUNNING" in d.message
    assert D.on_scheduler_state("running", st(RUNNING, "RUNNING"), "slurm").status is None


@pytest.mark.parametrize("status,outcome", [
    (SUCCEEDED, "succeeded"), (FAILED, "failed"), (CANCELLED, "cancelled")])
@pytest.mark.parametrize("current", ["submitted", "running"])
def test_every_end_goes_through_finishing(current, status, outcome):
    d = D.on_scheduler_state(current, st(status, "X", exit_code=7, elapsed_seconds=3, cpus=2),
                             "slurm")
    assert d.status == "finishing"
    assert d.fields == {"outcome": outcome, "exit_code": 7, "scheduler_state": "X",
                        "elapsed_seconds": 3, "cpus": 2}


def decide_sacct(line):
    state = parse_sacct(line)["42"]
    decision = D.on_scheduler_state("running", state, "slurm")
    if decision.status is None:
        return None, None
    f = decision.fields
    return f["outcome"], D.final_message(f["outcome"], f["exit_code"], f["scheduler_state"],
                                         state.reason)


@pytest.mark.parametrize("line,outcome,message", [
    ("42|hpcbridge-x|COMPLETED|0:0|00:00:01|1", "succeeded", "succeeded"),
    ("42|hpcbridge-x|FAILED|3:0|00:00:01|1", "failed", "failed with exit code 3"),
    ("42|hpcbridge-x|TIMEOUT|0:0|00:01:03|1", "failed", "failed: TIMEOUT"),
    ("42|hpcbridge-x|OUT_OF_MEMORY|137:0|00:00:02|1", "failed",
     "failed: OUT_OF_MEMORY (exit code 137)"),
    ("42|hpcbridge-x|NODE_FAIL|0:0|00:00:02|1", "failed", "failed: NODE_FAIL"),
    ("42|hpcbridge-x|CANCELLED by 1001|0:0|00:00:02|1", "cancelled", "cancelled"),
    ("42|hpcbridge-x|FAILED|0:9|00:00:02|1", "failed", "failed with exit code 137"),
])
def test_sacct_answers_become_final_messages(line, outcome, message):
    assert decide_sacct(line) == (outcome, message)


@pytest.mark.parametrize("line", [
    "42|allocation|PENDING|0:0|00:00:00|1",  # sacct lags the controller by seconds
    "42|hpcbridge-x|RUNNING|0:0|00:00:01|1",
])
def test_sacct_lag_is_not_an_outcome(line):
    assert decide_sacct(line) == (None, None)


def test_a_timeout_seen_in_squeue_still_says_timeout():
    state = parse_squeue("42|TIMEOUT|TimeLimit|1:01|1")["42"]
    d = D.on_scheduler_state("running", state, "slurm")
    assert d.status == "finishing"
    assert "TIMEOUT" in D.final_message("failed", d.fields["exit_code"],
                                        d.fields["scheduler_state"], state.reason)


def test_final_message_without_details():
    assert D.final_message("failed", None, None) == "failed: unknown reason"
    assert D.final_message("failed", None, None, "exit code 1") == "failed: exit code 1"
    assert D.final_message("cancelled", 0, "CANCELLED by 0") == "cancelled"
