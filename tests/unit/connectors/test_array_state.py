"""Job arrays as the Slurm handler reads and writes them (pure, no Slurm): squeue -r and
sacct lines of array elements, pending ranges, the array's batch script, the batched
sbatch's answers and the lookup by name. The real commands: tests/integration/maintainer/
test_sweeps_engine.py."""
from __future__ import annotations

import shlex
import subprocess

import pytest

from hpcbridge.connectors.config import HPCConfig
from hpcbridge.connectors.errors import HPCUnavailable, SchedulerError
from hpcbridge.connectors.handlers import SlurmHandler
from hpcbridge.connectors.handlers.slurm import SUBMIT_ONE, _named
from hpcbridge.connectors.layout import PARAMS_FILE, SweepDir
from hpcbridge.connectors.spec import (
    ArraySpec,
    JobSpec,
    array_ranges,
    params_script,
    render_array_script,
)
from hpcbridge.connectors.state import (
    FAILED,
    RUNNING,
    SUBMITTED,
    SUCCEEDED,
    UNKNOWN,
    expand_array_id,
    parse_sacct,
    parse_squeue,
)


def test_squeue_r_prints_one_line_per_element_and_ranges_are_expanded():
    out = ("77_3|RUNNING|None|0:05|1|hpcbridge-s1\n"
           "77_4|PENDING|JobArrayTaskLimit|0:00|1|hpcbridge-s1\n"
           "78_[2-4,9%2]|PENDING|Priority|0:00|1|hpcbridge-s2\n"
           "79|PENDING|None|0:00|1|hpcbridge-j\n")
    states = parse_squeue(out)
    assert states["77_3"].status == RUNNING and states["77_3"].name == "hpcbridge-s1"
    assert states["77_4"].status == SUBMITTED
    assert sorted(k for k in states if k.startswith("78_")) == \
        ["78_2", "78_3", "78_4", "78_9"]
    assert states["78_9"].scheduler_id == "78_9" and states["79"].status == SUBMITTED


def test_sacct_rows_of_elements_and_of_a_range_not_started():
    out = ("77_0|hpcbridge-s1|COMPLETED|0:0|00:00:02|1\n"
           "77_0.batch|batch|COMPLETED|0:0|00:00:02|1\n"
           "77_1|hpcbridge-s1|FAILED|3:0|00:00:01|1\n"
           "77_[5-6]|hpcbridge-s1|PENDING|0:0|00:00:00|0\n")
    states = parse_sacct(out)
    assert states["77_0"].status == SUCCEEDED and "77_0.batch" not in states
    assert states["77_1"].status == FAILED and states["77_1"].exit_code == 3
    assert states["77_5"].status == states["77_6"].status == UNKNOWN


@pytest.mark.parametrize("job_id, ids", [
    ("12", ["12"]), ("12_3", ["12_3"]), ("12_[0-2]", ["12_0", "12_1", "12_2"]),
    ("12_[1,4-5%3]", ["12_1", "12_4", "12_5"]), ("12_[x]", ["12_[x]"]),
])
def test_expand_array_id(job_id, ids):
    assert expand_array_id(job_id) == ids


@pytest.mark.parametrize("indices, text", [
    ([0], "0"), ([0, 1, 2], "0-2"), ([5, 0, 1, 2, 7, 8], "0-2,5,7-8"), ([3, 3, 4], "3-4"),
])
def test_array_ranges(indices, text):
    assert array_ranges(indices) == text


def test_array_ranges_refuses_nothing_and_negatives():
    for bad in ([], [-1, 0]):
        with pytest.raises(ValueError):
            array_ranges(bad)


def array_spec(throttle=None, indices=(0, 1, 2)) -> ArraySpec:
    folder = SweepDir("/w/alice/s1")
    spec = JobSpec(name="hpcbridge-s1", workdir=folder.path, command="mkdir -p result\nrun",
                   environment={"HPCBRIDGE_SWEEP_ID": "s1"}, partition="debug")
    return ArraySpec(spec, tuple(indices), folder.elements, PARAMS_FILE, throttle)


def test_the_array_script_picks_its_element_by_task_id():
    text = render_array_script(array_spec(throttle=4, indices=(0, 1, 2, 5)), ["module x"])
    lines = text.splitlines()
    assert "#SBATCH --array=0-2,5%4" in lines
    assert "#SBATCH --output=/w/alice/s1/elements/%a/stdout.log" in lines
    assert "#SBATCH --error=/w/alice/s1/elements/%a/stderr.log" in lines
    assert lines.index("module x") < lines.index("set -eo pipefail")
    assert '. /w/alice/s1/elements/"$SLURM_ARRAY_TASK_ID"/.hpcbridge-params.sh' in lines
    assert lines[-3:] == ['cd /w/alice/s1/elements/"$SLURM_ARRAY_TASK_ID"',
                          "mkdir -p result", "run"]


def test_the_array_script_refuses_a_bad_throttle():
    with pytest.raises(ValueError):
        render_array_script(array_spec(throttle=0))


def test_an_elements_params_reach_it_quoted(tmp_path):
    hostile = "$(touch pwned); `id`; 'x' \"y\"\nz"
    (tmp_path / "p.sh").write_bytes(params_script({"param_x": hostile, "A": "1"}))
    out = subprocess.run(["bash", "-c", '. ./p.sh && printf %s "$param_x"'],
                         cwd=tmp_path, capture_output=True, text=True, check=True).stdout
    assert out == hostile and not (tmp_path / "pwned").exists()


def test_the_batched_sbatch_loop_reports_each_script(tmp_path):
    """The loop as the login node runs it, with a stand-in sbatch: ids, refusals, and
    what sbatch said besides (a warning) never taken for an id."""
    sbatch = tmp_path / "sbatch"
    sbatch.write_text('#!/bin/sh\ncase "$2" in *bad*) echo "sbatch: error: Invalid '
                      'partition name specified" >&2; exit 1;; esac\n'
                      'echo "sbatch: warning: odd" >&2\necho "41;cluster"\n')
    sbatch.chmod(0o755)
    one = SUBMIT_ONE.format(sbatch=shlex.join([str(sbatch), "--parsable"]))
    paths = ["/w/a", "/w/bad", "/w/c", "/w/d", "/w/e"]
    out = subprocess.run(["xargs", "-n", "1", "-P", "3", "sh", "-c", one, "sh"],
                         input="".join(p + "\n" for p in paths), capture_output=True,
                         text=True, check=True).stdout
    lines = dict(line.split("\t", 1) for line in out.splitlines())
    assert sorted(lines) == sorted(paths)  # one line each, in whatever order they ended
    handler = SlurmHandler(HPCConfig(id="c", user="u"), transport=None)
    answers = [handler._one_submitted(lines[p]) for p in paths]
    assert answers[0] == answers[2] == answers[4] == "41"
    assert isinstance(answers[1], SchedulerError) and "Invalid partition" in str(answers[1])


def test_a_controller_down_in_the_loop_is_the_hpc_s_condition():
    handler = SlurmHandler(HPCConfig(id="c", user="u"), transport=None)
    answer = handler._one_submitted("1\tsbatch: error: Batch job submission failed: "
                                    "Unable to contact slurm controller (connect failure)")
    assert isinstance(answer, HPCUnavailable)


def test_lookup_by_name_takes_an_array_s_own_id():
    out = "90|hpcbridge-a\n91_[0-9]|hpcbridge-s\n91_3|hpcbridge-s\n92|hpcbridge-other\n"
    assert _named(out, {"hpcbridge-a", "hpcbridge-s", "hpcbridge-x"}) == \
        {"hpcbridge-a": "90", "hpcbridge-s": "91"}
