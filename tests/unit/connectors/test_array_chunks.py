"""A sweep larger than the site's MaxArraySize cut into several job arrays (issue #24;
pure, no Slurm): which array and task each element is, the arrays' names and scripts,
the links through which Slurm writes an element's logs, and one command for all arrays.
The real Slurm: tests/integration/maintainer/test_sweep_chunks.py."""
from __future__ import annotations

import asyncio
import io
import os
import subprocess
import tarfile
from types import SimpleNamespace

import pytest

from hpcbridge.connectors.config import HPCConfig
from hpcbridge.connectors.handlers import SlurmHandler
from hpcbridge.connectors.layout import EXIT_MARKER, PARAMS_FILE, SweepDir
from hpcbridge.connectors.spec import (
    ArraySpec,
    JobSpec,
    array_chunks,
    array_task,
    chunk_name,
    element_array_name,
    job_name,
    render_array_script,
)
from hpcbridge.maintainer.sweeps import element_archive, sweep_arrays


def test_an_element_is_its_index_less_the_offset_of_its_array():
    # MaxArraySize 4: task ids 0..2, so arrays of 3 elements
    assert [array_task(i, 4) for i in range(7)] == [
        (0, 0), (0, 1), (0, 2), (3, 0), (3, 1), (3, 2), (6, 0)]
    assert array_chunks(range(10), 4) == {0: (0, 1, 2), 3: (0, 1, 2), 6: (0, 1, 2), 9: (0,)}


def test_a_sweep_that_fits_is_one_array_with_its_own_indices():
    indices = [0, 1, 2, 5, 999]
    assert array_chunks(indices, 1001) == {0: tuple(indices)}


def test_ten_thousand_elements_at_slurms_default_are_ten_arrays_below_the_limit():
    chunks = array_chunks(range(10_000), 1001)
    assert len(chunks) == 10
    assert all(len(tasks) <= 1000 and max(tasks) < 1001 - 1 for tasks in chunks.values())
    assert sorted(o + t for o, tasks in chunks.items() for t in tasks) == list(range(10_000))


def test_the_cut_depends_on_the_index_alone():
    """A resubmission after a crash (some elements cancelled meanwhile) cuts the same."""
    assert array_chunks([1, 4, 8], 4) == {0: (1,), 3: (1,), 6: (2,)}
    assert array_chunks([8, 4], 4) == {3: (1,), 6: (2,)}


def test_array_task_refuses_a_size_slurm_cannot_have():
    for size, index in ((1, 0), (0, 3), (4, -1)):
        with pytest.raises(ValueError):
            array_task(index, size)
    with pytest.raises(ValueError):
        HPCConfig(id="c", max_array_size=1)
    assert HPCConfig(id="c").max_array_size == 1001


def test_the_first_array_keeps_the_sweeps_name_the_others_are_named_apart():
    names = [chunk_name("s1", offset) for offset in (0, 3, 6)]
    assert names == [job_name("s1"), "hpcbridge-s1+3", "hpcbridge-s1+6"]
    for name in names:  # names sbatch takes as they are
        JobSpec(name=name, workdir="/w", command="true")
    # an element's array found again from what it was submitted as
    assert element_array_name("s1", 7, "123_1") == "hpcbridge-s1+6"
    assert element_array_name("s1", 2, "120_2") == "hpcbridge-s1"


def array_spec(offset=0, tasks=(0, 1, 2), throttle=None) -> ArraySpec:
    folder = SweepDir("/w/alice/s1")
    spec = JobSpec(name=chunk_name("s1", offset), workdir=folder.path, command="run")
    return ArraySpec(spec, tuple(tasks), folder.elements, PARAMS_FILE, throttle, offset,
                     f"{folder.path}/chunks/{offset}" if offset else None)


def test_an_array_at_an_offset_finds_its_elements_and_logs_them_through_links():
    lines = render_array_script(array_spec(offset=3, tasks=(0, 2), throttle=2)).splitlines()
    assert "#SBATCH --array=0,2%2" in lines
    assert "#SBATCH --job-name=hpcbridge-s1+3" in lines
    assert "#SBATCH --output=/w/alice/s1/chunks/3/%a/stdout.log" in lines
    assert "#SBATCH --error=/w/alice/s1/chunks/3/%a/stderr.log" in lines
    own = '/w/alice/s1/elements/"$((SLURM_ARRAY_TASK_ID + 3))"'
    assert lines[-3:] == [f". {own}/{PARAMS_FILE}", f"cd {own}", "run"]
    assert array_spec(offset=3).home == "/w/alice/s1/chunks/3"


def test_the_first_array_is_rendered_as_a_sweep_always_was():
    lines = render_array_script(array_spec()).splitlines()
    assert "#SBATCH --output=/w/alice/s1/elements/%a/stdout.log" in lines
    assert lines[-2] == 'cd /w/alice/s1/elements/"$SLURM_ARRAY_TASK_ID"'
    assert array_spec().home == "/w/alice/s1"


def test_an_array_at_an_offset_needs_its_links_folder():
    bad = [ArraySpec(array_spec().spec, (0,), "/w/e", PARAMS_FILE, None, 3, None),
           ArraySpec(array_spec().spec, (0,), "/w/e", PARAMS_FILE, None, -3, "/w/l"),
           ArraySpec(array_spec().spec, (0,), "/w/e", PARAMS_FILE, None, 3, "/w/l;x")]
    for array in bad:
        with pytest.raises(ValueError):
            render_array_script(array)


def sweep(n: int, throttle=None):
    elements = [SimpleNamespace(id=f"e{i}", sweep_index=i, user="alice", app="hello",
                                hpc="c", resources={}, params={"x": i}) for i in range(n)]
    return SimpleNamespace(id="s1", throttle=throttle), elements


def test_the_sweeps_throttle_is_divided_among_its_arrays():
    spec = array_spec().spec
    s, _ = sweep(10, throttle=10)
    arrays = sweep_arrays(spec, s, SweepDir("/w/alice/s1"), range(10), 4, 4)
    assert [a.array for a in arrays] == ["0-2%2", "0-2%2", "0-2%2", "0%2"]
    assert [a.spec.name for a in arrays] == [chunk_name("s1", o) for o in (0, 3, 6, 9)]
    s.throttle = 3  # fewer than arrays: each still runs one at a time
    assert {a.throttle for a in sweep_arrays(spec, s, SweepDir("/w"), range(10), 4, 4)} == {1}
    s.throttle = None
    assert [a.array for a in sweep_arrays(spec, s, SweepDir("/w"), range(4), 1001, 1)] == \
        ["0-3"]


def test_every_element_runs_in_its_own_folder_and_logs_there(tmp_path):
    """The archive as staging unpacks it and each array's script as bash runs it for one
    task id (its #SBATCH lines are comments), its --output opened as Slurm would."""
    root = tmp_path / "s1"
    root.mkdir()
    folder = SweepDir(str(root))
    s, elements = sweep(10)
    with tarfile.open(fileobj=io.BytesIO(element_archive(elements, folder, [], False, 4))) as t:
        t.extractall(root, filter="fully_trusted")  # our own links, as tar -x on the HPC
    spec = JobSpec(name="x", workdir=folder.path,
                   command='printf "%s %s" "$param_x" "$(pwd -P)" > seen')
    handler = SlurmHandler(HPCConfig(id="c", user="u"), transport=None)
    for array in sweep_arrays(spec, s, folder, range(10), 4, 4):
        path, text = handler.array_script(array)
        assert path == f"{array.home}/job.sbatch"
        for task in array.indices:
            index = array.offset + task
            subprocess.run(["bash", "-c", text.decode()], check=True,
                           env={"SLURM_ARRAY_TASK_ID": str(task), "PATH": os.environ["PATH"]})
            element = root / "elements" / str(index)
            assert (element / "seen").read_text() == f"{index} {element}"
            assert (element / EXIT_MARKER).read_text() == "0"  # in its own folder too
            output = next(line.split("=", 1)[1] for line in text.decode().splitlines()
                          if line.startswith("#SBATCH --output="))
            with open(output.replace("%a", str(task)), "w") as log:
                log.write(f"log of {index}")
            assert (element / "stdout.log").read_text() == f"log of {index}"


class Transport:
    """Records writes; the batched sbatch answers an id per script but refuses one."""

    def __init__(self):
        self.written, self.commands = {}, []

    async def write_bytes(self, path, data, mode=0o600):
        self.written[path] = (data, mode)

    async def run(self, argv, stdin=""):
        self.commands.append(argv)
        lines = [f"{p}\t1\tsbatch: error: Batch job submission failed: Invalid job array "
                 f"specification" if "/chunks/6/" in p else f"{p}\t0\t{100 + i}"
                 for i, p in enumerate(stdin.split())]
        return SimpleNamespace(exit_status=0, stdout="\n".join(lines) + "\n", stderr="")


def test_all_arrays_of_a_sweep_go_in_one_command():
    transport = Transport()
    handler = SlurmHandler(HPCConfig(id="c", user="u"), transport=transport)
    s, _ = sweep(10)
    arrays = sweep_arrays(array_spec().spec, s, SweepDir("/w/alice/s1"), range(10), 4, 4)
    answers = asyncio.run(handler.submit_arrays(arrays))
    assert answers[:2] == ["100", "101"] and answers[3] == "103"
    assert "Invalid job array" in str(answers[2])
    assert len(transport.commands) == 1 and transport.commands[0][0] == "xargs"
    assert sorted(transport.written) == ["/w/alice/s1/chunks/3/job.sbatch",
                                         "/w/alice/s1/chunks/6/job.sbatch",
                                         "/w/alice/s1/chunks/9/job.sbatch",
                                         "/w/alice/s1/job.sbatch"]
    assert {mode for _, mode in transport.written.values()} == {0o700}
