"""Slurm states → lifecycle statuses, and parsing of squeue/sacct output (pure)."""
import pytest

from hpcbridge.connectors.state import (
    CANCELLED,
    FAILED,
    FINAL,
    RUNNING,
    SLURM_STATES,
    SUBMITTED,
    SUCCEEDED,
    UNKNOWN,
    JobState,
    map_slurm_state,
    parse_elapsed,
    parse_exit_code,
    parse_sacct,
    parse_squeue,
)

# The design's table: every state a Slurm job can be in, and what it means here.
EXPECTED = {
    "PENDING": SUBMITTED,
    "CONFIGURING": RUNNING,
    "RUNNING": RUNNING,
    "COMPLETING": RUNNING,
    "SUSPENDED": RUNNING,
    "REQUEUED": SUBMITTED,
    "COMPLETED": SUCCEEDED,
    "CANCELLED": CANCELLED,
    "CANCELLED by 1001": CANCELLED,
    "FAILED": FAILED,
    "TIMEOUT": FAILED,
    "OUT_OF_MEMORY": FAILED,
    "NODE_FAIL": FAILED,
    "PREEMPTED": FAILED,
    "BOOT_FAIL": FAILED,
    "DEADLINE": FAILED,
}
FAILING = ["TIMEOUT", "OUT_OF_MEMORY", "NODE_FAIL", "PREEMPTED", "BOOT_FAIL", "DEADLINE"]
SACCT = "JobID|JobName|State|ExitCode|Elapsed|AllocCPUS"


@pytest.mark.parametrize(("raw", "status"), sorted(EXPECTED.items()))
def test_every_slurm_state_maps_to_its_lifecycle_status(raw, status):
    assert map_slurm_state(raw) == status


def test_mapping_covers_every_state_named_in_the_design():
    for raw in EXPECTED:
        assert raw.split(" ")[0] in SLURM_STATES, raw


@pytest.mark.parametrize("raw", ["COMPLETED+", "completed", "  RUNNING  ", "CANCELLED+"])
def test_truncated_and_oddly_cased_states_still_map(raw):
    assert map_slurm_state(raw) != UNKNOWN


@pytest.mark.parametrize("raw", ["", "GIBBERISH", "SUCCESS", "DONE"])
def test_unheard_of_states_are_unknown_never_success(raw):
    assert map_slurm_state(raw) == UNKNOWN


@pytest.mark.parametrize(("text", "expected"), [
    ("0:0", (0, 0)), ("3:0", (3, 0)), ("0:9", (0, 9)), ("255:0", (255, 0)),
    ("1", (1, 0)), ("", (None, None)), ("x:y", (None, None)),
])
def test_exit_code_is_code_colon_signal(text, expected):
    assert parse_exit_code(text) == expected


@pytest.mark.parametrize(("text", "seconds"), [
    ("0:00", 0), ("05:06", 306), ("1:02:03", 3723), ("00:00:07", 7),
    ("1-00:00:00", 86400), ("2-03:04:05", 2 * 86400 + 3 * 3600 + 4 * 60 + 5),
    ("", None), ("  ", None),
])
def test_elapsed(text, seconds):
    assert parse_elapsed(text) == seconds


@pytest.mark.parametrize("text", ["INVALID", "UNLIMITED", "N/A", "1:xx"])
def test_elapsed_garbage_does_not_break_a_status_round(text):
    # parse_squeue / parse_sacct go through _safe: garbage becomes None, not an exception
    line = f"7|RUNNING|None|{text}|1"
    assert parse_squeue(line)["7"].elapsed_seconds is None


def test_squeue_lines():
    out = ("101|PENDING|Priority|0:00|4\n"
           "102|RUNNING|None|1:02:03|1\n"
           "103|COMPLETING|None|05:06|2\n"
           "\n"
           "104|PENDING|JobHeldUser|0:00|1\n")
    states = parse_squeue(out)
    assert set(states) == {"101", "102", "103", "104"}
    assert states["101"] == JobState("101", SUBMITTED, "PENDING", None, "Priority", 0, 4)
    assert states["102"] == JobState("102", RUNNING, "RUNNING", None, None, 3723, 1)
    assert states["103"].status == RUNNING and states["103"].elapsed_seconds == 306
    assert states["104"].reason == "JobHeldUser"
    assert not any(s.status in FINAL for s in states.values())


def test_squeue_ignores_blank_and_malformed_lines():
    assert parse_squeue("\n  \n|RUNNING\nnot-a-line\n") == {}


def test_sacct_final_states():
    out = "\n".join([
        "11|wrap|COMPLETED|0:0|00:00:01|1",
        "12|wrap|FAILED|3:0|00:00:02|1",
        "13|wrap|FAILED|0:9|00:00:03|1",
        "14|wrap|CANCELLED by 1001|0:0|00:00:04|1",
        "15|wrap|TIMEOUT|0:0|00:01:30|1",
        "16|wrap|OUT_OF_MEMORY|0:125|00:00:05|2",
    ]) + "\n"
    s = parse_sacct(out)
    assert s["11"] == JobState("11", SUCCEEDED, "COMPLETED", 0, None, 1, 1, "wrap")
    assert (s["12"].status, s["12"].exit_code, s["12"].reason) == (FAILED, 3, "exit code 3")
    # killed by a signal: exit code 0 with signal 9 is not a success
    assert s["13"].status == FAILED
    assert s["13"].exit_code == 128 + 9
    assert "signal 9" in s["13"].reason
    assert s["14"].status == CANCELLED and "CANCELLED" in s["14"].reason
    assert s["15"].status == FAILED and s["15"].reason.startswith("TIMEOUT")
    assert s["15"].elapsed_seconds == 90
    assert s["16"].status == FAILED and s["16"].reason.startswith("OUT_OF_MEMORY")
    assert all(state.status in FINAL for state in s.values())


def test_records_carry_the_job_name_and_a_reused_id_keeps_its_newest_row():
    queued = parse_squeue("7|RUNNING|None|0:05|1|hpcbridge-abc|with|bars\n")
    assert queued["7"].name == "hpcbridge-abc|with|bars"  # the name is last: '|' stays in it
    # a controller that lost its newest jobs hands their ids out again: sacct -j lists both
    accounted = parse_sacct("8|hpcbridge-old|COMPLETED|0:0|00:00:01|1\n"
                            "8|hpcbridge-new|RUNNING|0:0|00:00:01|1\n")
    assert accounted["8"].name == "hpcbridge-new"
    # accounting that lags the controller names a job "allocation": not a name
    assert parse_sacct("9|allocation|CANCELLED by 0|0:0|00:00:01|1\n")["9"].name is None


@pytest.mark.parametrize("raw", FAILING)
def test_sacct_failure_reason_names_the_state(raw):
    state = parse_sacct(f"9|job|{raw}|0:0|00:00:01|1")["9"]
    assert state.status == FAILED
    assert state.reason.startswith(raw)


def test_sacct_batch_and_extern_steps_are_ignored():
    out = ("21|wrap|COMPLETED|0:0|00:00:01|1\n"
           "21.batch|batch|FAILED|1:0|00:00:01|1\n"
           "21.extern|extern|COMPLETED|0:0|00:00:01|1\n"
           "22.batch|batch|COMPLETED|0:0|00:00:01|1\n"
           "22.0|step|COMPLETED|0:0|00:00:01|1\n")
    s = parse_sacct(out)
    assert set(s) == {"21"}
    assert s["21"].status == SUCCEEDED


@pytest.mark.parametrize("raw", ["PENDING", "RUNNING", "REQUEUED", "SUSPENDED", "COMPLETING",
                                 "GIBBERISH"])
def test_sacct_non_final_answer_is_unknown(raw):
    # sacct lags the controller by seconds: a job that left squeue but that sacct still
    # calls PENDING (named 'allocation') is "not known yet", never succeeded.
    state = parse_sacct(f"31|allocation|{raw}|0:0|00:00:00|1")["31"]
    assert state.status == UNKNOWN
    assert state.status not in FINAL


def test_final_set_is_exactly_the_three_ends():
    assert FINAL == {SUCCEEDED, FAILED, CANCELLED}
