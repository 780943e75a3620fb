"""The `hpcbridge` job commands (submit, list, status, logs, cancel, download) as a terminal
user runs them: the installed console script, against the real middleware, maintainer,
JupyterHub tokens and Slurm."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest
from services import free_port

pytestmark = [pytest.mark.stack, pytest.mark.slow]

HPCBRIDGE = os.path.join(os.path.dirname(sys.executable), "hpcbridge")
WAIT = 240


def clean_env(**extra) -> dict:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("HPCBRIDGE_", "JUPYTERHUB_"))}
    env.update(extra)
    return env


@pytest.fixture
def cli(slurm_middleware, hub, tmp_path):
    """cli(*args): the console script as alice; its result, checked to have no traceback
    (and, with check=True, to exit 0)."""
    env = clean_env(HPCBRIDGE_URL=slurm_middleware.url, HPCBRIDGE_TOKEN=hub.tokens["alice"])

    def run(*args, timeout=WAIT + 60, check=True, env_=None):
        result = subprocess.run([HPCBRIDGE, *args], capture_output=True, text=True,
                                timeout=timeout, cwd=tmp_path, env=env_ or env)
        assert "Traceback" not in result.stderr, result.stderr
        if check:
            assert result.returncode == 0, (args, result.stdout, result.stderr)
        return result
    return run


def as_json(result):
    return json.loads(result.stdout)


def test_a_job_end_to_end_with_json_output(cli, tmp_path):
    data = tmp_path / "input"
    data.mkdir()
    (data / "points.txt").write_text("1 2\n3 4\n")
    t0 = time.monotonic()
    job = as_json(cli("submit", "hello", "--hpc", "slurm", "-p", "name=Terminal",
                      "-p", "lines=2", "-p", "delay=0", "--upload", str(data), "--json"))
    # submit waits for the end by default
    assert job["status"] == "succeeded", job
    assert (job["user"], job["app"], job["hpc"]) == ("alice", "hello", "slurm")
    assert job["params"] == {"name": "Terminal", "lines": 2, "delay": 0.0}
    assert job["exit_code"] == 0 and job["upload"]
    assert time.monotonic() - t0 < WAIT

    listed = as_json(cli("list", "--json"))
    assert job["id"] in {j["id"] for j in listed}
    assert all(j["user"] == "alice" for j in listed)
    only = as_json(cli("--json", "list", "--status", "succeeded"))  # --json before, too
    assert job["id"] in {j["id"] for j in only}
    assert {j["status"] for j in only} == {"succeeded"}

    status = as_json(cli("status", job["id"], "--json"))
    assert status["id"] == job["id"] and status["status"] == "succeeded"
    assert status["scheduler_id"]

    logs = as_json(cli("logs", job["id"], "--json"))
    assert logs == {"stream": "stdout",
                    "data": "[1/2] Hello, Terminal!\n[2/2] Hello, Terminal!\n"}
    assert as_json(cli("logs", job["id"], "--stream", "stderr", "--json"))["data"] == "done\n"
    assert cli("logs", job["id"]).stdout == logs["data"]  # plain text without --json

    out = as_json(cli("download", job["id"], str(tmp_path / "res"), "--json"))
    assert out == {"path": str(tmp_path / "res")}
    assert (tmp_path / "res" / "result" / "greeting.txt").read_text() == "Hello, Terminal!\n"
    assert "points.txt" in (tmp_path / "res" / "result" / "data_listing.txt").read_text()
    # without a destination: ./hpcbridge-results/<id>
    assert "results in" in cli("download", job["id"]).stdout
    assert (tmp_path / "hpcbridge-results" / job["id"] / "result" / "greeting.txt").exists()

    # the readable (non-JSON) forms
    assert job["id"] in cli("list").stdout
    plain = cli("status", job["id"]).stdout
    assert job["id"] in plain and "hello@slurm" in plain and "succeeded" in plain


def test_cancel_a_long_job(cli):
    job = as_json(cli("submit", "hello", "--hpc", "slurm", "-p", "name=Slow", "-p",
                      "lines=100", "-p", "delay=1", "--no-wait", "--json"))
    assert job["status"] == "queued"
    deadline = time.monotonic() + WAIT
    while as_json(cli("status", job["id"], "--json"))["status"] != "running":
        assert time.monotonic() < deadline, "the long job never ran"
        time.sleep(0.5)
    cancelled = as_json(cli("cancel", job["id"], "--json"))
    assert cancelled["cancel_requested"] is True
    while (final := as_json(cli("status", job["id"], "--json")))["status"] != "cancelled":
        assert final["status"] not in ("succeeded", "failed"), final
        assert time.monotonic() < deadline, final
        time.sleep(0.5)
    # cancelling again: a readable conflict, non-zero exit
    again = cli("cancel", job["id"], check=False)
    assert again.returncode != 0 and "already cancelled" in again.stderr


def test_logs_follow_prints_until_the_job_ends(cli):
    job = as_json(cli("submit", "hello", "--hpc", "slurm", "-p", "name=Follow", "-p",
                      "lines=3", "-p", "delay=0.5", "--no-wait", "--json"))
    out = cli("logs", "-f", job["id"]).stdout
    assert out == "".join(f"[{i}/3] Hello, Follow!\n" for i in (1, 2, 3))
    pieces = [json.loads(line) for line in
              cli("logs", "-f", job["id"], "--json").stdout.splitlines()]
    assert "".join(p["data"] for p in pieces) == out
    assert {p["stream"] for p in pieces} == {"stdout"}
    assert as_json(cli("status", job["id"], "--json"))["status"] == "succeeded"


def test_bad_param_is_a_readable_error(cli):
    before = as_json(cli("list", "--json"))
    result = cli("submit", "hello", "--hpc", "slurm", "-p", "lines=0", check=False)
    assert result.returncode != 0
    assert "params.lines" in result.stderr and "must be at least 1" in result.stderr
    assert result.stderr.startswith("hpcbridge: ")

    result = cli("submit", "hello", "--hpc", "slurm", "-p", "lines=0", "--json", check=False)
    assert result.returncode != 0 and result.stdout == ""
    error = json.loads(result.stderr)
    assert error["error"] == "validation_error"
    assert {"loc": ["params", "lines"], "msg": "must be at least 1"} in error["details"]

    result = cli("submit", "hello", "-p", "lines", check=False)  # not NAME=VALUE
    assert result.returncode != 0 and "NAME=VALUE" in result.stderr
    assert as_json(cli("list", "--json")) == before  # nothing was submitted


def test_unknown_job_and_bad_token(cli, slurm_middleware):
    result = cli("status", "0" * 32, check=False)
    assert result.returncode != 0 and "no job" in result.stderr
    result = cli("list", check=False,
                 env_=clean_env(HPCBRIDGE_URL=slurm_middleware.url, HPCBRIDGE_TOKEN="wrong"))
    assert result.returncode != 0 and "invalid or expired token" in result.stderr


def test_nothing_configured_and_middleware_down(cli, tmp_path):
    result = cli("list", check=False, env_=clean_env())
    assert result.returncode != 0 and "HPCBRIDGE_URL" in result.stderr
    down = f"http://127.0.0.1:{free_port()}"
    result = cli("--url", down, "--token", "x", "list", check=False, env_=clean_env())
    assert result.returncode != 0
    assert "cannot reach the hpcbridge middleware" in result.stderr and down in result.stderr


def test_token_from_a_hub_spawned_environment(cli, slurm_middleware, hub):
    """In a JupyterHub terminal: HPCBRIDGE_URL from the hub, JUPYTERHUB_API_TOKEN = user's."""
    result = cli("list", "--json", env_=clean_env(HPCBRIDGE_URL=slurm_middleware.url,
                                                  JUPYTERHUB_API_TOKEN=hub.tokens["bob"]))
    assert all(j["user"] == "bob" for j in json.loads(result.stdout))
