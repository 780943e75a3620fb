"""The batch script's exit marker (connectors/spec.py, layout.EXIT_MARKER), run by a real
bash: it holds the script's exit status however the script ends, and never changes that
status, even when it cannot be written."""
from __future__ import annotations

import os
import signal
import subprocess
import time

import pytest

from hpcbridge.connectors.layout import EXIT_MARKER
from hpcbridge.connectors.spec import JobSpec, render_batch_script


def run_script(workdir, command: str, term_after: float | None = None) -> int:
    script = render_batch_script(JobSpec(name="x", workdir=str(workdir), command=command))
    proc = subprocess.Popen(["bash", "-c", script], start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    if term_after is not None:  # as Slurm cancels: every process of the job signalled
        time.sleep(term_after)
        os.killpg(proc.pid, signal.SIGTERM)
    return proc.wait(30)


@pytest.mark.parametrize("command,status", [
    ("true", 0), ("exit 3", 3), ("false", 1), ("ls /nonexistent-dir", 2),
    ("echo ok | false", 1)])
def test_the_marker_holds_the_scripts_exit_status(tmp_path, command, status):
    assert run_script(tmp_path, command) == status
    assert (tmp_path / EXIT_MARKER).read_text() == str(status)


def test_a_job_killed_by_sigterm_is_not_marked_as_a_success(tmp_path):
    assert run_script(tmp_path, "sleep 20", term_after=0.5) == 143
    assert (tmp_path / EXIT_MARKER).read_text() == "143"


def test_a_marker_that_cannot_be_written_changes_nothing(tmp_path):
    (tmp_path / EXIT_MARKER).mkdir()  # the write fails: a folder is in the way
    assert run_script(tmp_path, "true") == 0
    assert run_script(tmp_path, "exit 4") == 4
