"""JobSpec validation and batch script rendering: hostile values stay data, the HPC's
prelude lines go between hpcbridge's #SBATCH lines and the job's commands."""
import os
import subprocess

import pytest
from pydantic import ValidationError

from hpcbridge.connectors.config import HPCConfig
from hpcbridge.connectors.spec import JobSpec, job_name, render_batch_script


def hostile_values(canary_dir):
    """Values a user may type into a parameter form; none may ever run."""
    c = canary_dir
    return {
        "P_SUBST": f"$(touch {c}/pwned-subst)",
        "P_SEMI": f"; touch {c}/pwned-semi; rm -rf ~",
        "P_BACKTICK": f"`touch {c}/pwned-backtick`",
        "P_NEWLINE": f"first line\ntouch {c}/pwned-newline\nthird",
        "P_SQUOTE": f"it's '$(touch {c}/pwned-sq)' here",
        "P_DQUOTE": f'say "$(touch {c}/pwned-dq)" and "`id`"',
        "P_MIXED": f"'\"`$(touch {c}/pwned-mixed)`\"'\\$HOME\\\n&& touch {c}/pwned-and",
        "P_VARS": "$HOME ${PATH} $$ $? $0 !! \\n \\",
        "P_GLOB": "* ? [a-z] ~ ~root",
        "P_EMPTY": "",
        "P_SPACES": "  leading and trailing  ",
        "P_UNICODE": "héllo wörld ✓ \t tab",
        "P_EOF": "EOF\nEOF'\n#SBATCH --partition=evil",
    }


def read_env0(path):
    """`env -0` output → dict (values may contain newlines)."""
    with open(path, "rb") as f:
        items = f.read().split(b"\0")
    env = {}
    for item in items:
        if item:
            key, _, value = item.decode().partition("=")
            env[key] = value
    return env


def test_hostile_values_arrive_verbatim_and_nothing_runs(tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    canary = tmp_path / "canary"
    canary.mkdir()
    values = hostile_values(canary)
    spec = JobSpec(name=job_name("0b7c6c1e-hostile"), workdir=str(work),
                   command="env -0 > env.out", environment=values)
    # bash reads the #SBATCH lines as comments; the prelude runs before the job's command
    script = render_batch_script(spec, ["#SBATCH --comment=site", "export SITE=prelude"])
    (tmp_path / "job.sh").write_text(script)
    # a clean environment so that only the script's exports can explain what we read
    proc = subprocess.run(["bash", str(tmp_path / "job.sh")], cwd=tmp_path,
                          env={"PATH": os.environ["PATH"], "HOME": str(tmp_path / "home")},
                          capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0, proc.stderr
    env = read_env0(work / "env.out")
    for key, value in values.items():
        assert env.get(key) == value, key
    assert env["SITE"] == "prelude"
    assert list(canary.iterdir()) == [], "a hostile value was executed"
    assert not (tmp_path / "home").exists()


def sbatch_directives(script):
    """The #SBATCH lines sbatch reads: those before the first command line."""
    found = []
    for line in script.splitlines()[1:]:
        if line.strip() and not line.startswith("#"):
            break
        if line.startswith("#SBATCH"):
            found.append(line)
    return found


def test_hostile_values_in_the_full_script_do_not_add_directives(tmp_path):
    values = hostile_values(tmp_path)
    spec = JobSpec(name="hpcbridge-x", workdir="/scratch/j/1", command="true",
                   environment=values, partition="debug")
    script = render_batch_script(spec)
    # sbatch stops reading directives at the first command, so a value's "#SBATCH" line
    # (inside quotes, after the first command) is never read as one.
    assert sbatch_directives(script) == sbatch_directives(
        render_batch_script(spec.model_copy(update={"environment": {}})))
    assert not any("evil" in line for line in sbatch_directives(script))
    assert sum(line.startswith("#SBATCH") for line in script.splitlines()) > len(
        sbatch_directives(script)), "the hostile #SBATCH line should be in the script body"


def test_script_directives_follow_the_spec():
    spec = JobSpec(name="hpcbridge-abc", workdir="/w/abc", command="python run.py",
                   partition="gpu", time_minutes=90, cpus=4, memory_mb=2048, gpus=1,
                   account="proj_1")
    lines = render_batch_script(spec).splitlines()
    assert lines[0] == "#!/bin/bash"
    for expected in ["#SBATCH --job-name=hpcbridge-abc", "#SBATCH --chdir=/w/abc",
                     "#SBATCH --output=/w/abc/stdout.log", "#SBATCH --error=/w/abc/stderr.log",
                     "#SBATCH --time=90", "#SBATCH --cpus-per-task=4", "#SBATCH --mem=2048M",
                     "#SBATCH --partition=gpu", "#SBATCH --gres=gpu:1",
                     "#SBATCH --account=proj_1"]:
        assert expected in lines
    assert lines[-1] == "python run.py"


PRELUDE = ["#SBATCH --account=abc", "#SBATCH --qos=short", "module load python"]


def test_prelude_goes_after_the_directives_and_before_the_commands():
    spec = JobSpec(name="hpcbridge-abc", workdir="/w/abc", command="python run.py",
                   partition="gpu", account="proj_1", environment={"param_x": "1"})
    plain = render_batch_script(spec).splitlines()
    lines = render_batch_script(spec, PRELUDE).splitlines()
    last_builtin = max(i for i, line in enumerate(plain) if line.startswith("#SBATCH"))
    assert lines[:last_builtin + 1] == plain[:last_builtin + 1]
    assert lines[last_builtin + 1:last_builtin + 4] == PRELUDE
    assert lines[last_builtin + 4:] == plain[last_builtin + 1:]
    assert lines[last_builtin + 4] == "set -eo pipefail"
    # the site's #SBATCH lines come before any command, so sbatch reads them
    assert sbatch_directives("\n".join(lines))[-2:] == PRELUDE[:2]


def test_prelude_does_not_weaken_the_quoting(tmp_path):
    spec = JobSpec(name="n", workdir="/w", command="true", environment=hostile_values(tmp_path))
    body = render_batch_script(spec).split("set -eo pipefail\n", 1)[1]
    assert render_batch_script(spec, PRELUDE).endswith("set -eo pipefail\n" + body)


@pytest.mark.parametrize("line", ["module load a\nrm -rf ~", "a\rb", "x\0y"])
def test_a_prelude_entry_is_one_line(line):
    with pytest.raises(ValidationError):
        HPCConfig(id="c", batch_prelude=["#SBATCH --qos=short", line])
    assert HPCConfig(id="c", batch_prelude=PRELUDE).batch_prelude == PRELUDE


def test_failing_command_fails_the_script(tmp_path):
    spec = JobSpec(name="n", workdir=str(tmp_path), command="false\necho after > after.txt")
    (tmp_path / "job.sh").write_text(render_batch_script(spec))
    proc = subprocess.run(["bash", str(tmp_path / "job.sh")], capture_output=True, timeout=30)
    assert proc.returncode != 0
    assert not (tmp_path / "after.txt").exists()


def test_job_name_carries_the_uuid():
    assert job_name("1234-abcd") == "hpcbridge-1234-abcd"
    JobSpec(name=job_name("1234-abcd"), workdir="/w", command="true")  # valid


BAD_NAMES = ["", "a b", "x;y", "x$(id)", "a/b", "n\n", "n\nm", "über", "a'b", "a\tb", "n,m"]


@pytest.mark.parametrize("name", BAD_NAMES)
def test_bad_names_are_rejected(name):
    with pytest.raises(ValidationError):
        JobSpec(name=name, workdir="/w", command="true")


@pytest.mark.parametrize("partition", ["", "a b", "debug\n", "debug\n#SBATCH --x", "p;q", "$(x)",
                                       "a,b"])
def test_bad_partitions_and_accounts_are_rejected(partition):
    with pytest.raises(ValidationError):
        JobSpec(name="n", workdir="/w", command="true", partition=partition)
    with pytest.raises(ValidationError):
        JobSpec(name="n", workdir="/w", command="true", account=partition)


@pytest.mark.parametrize("workdir", ["relative/dir", "./x", "~/x", "", "/a/../b", "/a/..",
                                     "/a b", "/a;b", "/a\n", "/a\nb", "/a/$(id)", "/a'b"])
def test_bad_workdirs_are_rejected(workdir):
    with pytest.raises(ValidationError):
        JobSpec(name="n", workdir=workdir, command="true")


@pytest.mark.parametrize("key", ["", "1ABC", "A-B", "A B", "A=B", "A;B", "$A", "A\n", "A\nB",
                                 "é"])
def test_bad_environment_names_are_rejected(key):
    with pytest.raises(ValidationError):
        JobSpec(name="n", workdir="/w", command="true", environment={key: "v"})


def test_nul_in_environment_value_is_rejected():
    with pytest.raises(ValidationError):
        JobSpec(name="n", workdir="/w", command="true", environment={"A": "x\0y"})


@pytest.mark.parametrize(("field", "value"), [("cpus", 0), ("time_minutes", 0),
                                              ("memory_mb", 0), ("gpus", -1)])
def test_resource_bounds(field, value):
    with pytest.raises(ValidationError):
        JobSpec(name="n", workdir="/w", command="true", **{field: value})
