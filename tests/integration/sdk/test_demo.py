"""The README's first command, headless: the whole system on embedded defaults."""
import json
import os
import signal
import subprocess
import sys
import time

import httpx
import psutil
import pytest
from services import free_port

pytestmark = [pytest.mark.slow]


def _processes_mentioning(text: str) -> list[str]:
    out = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                cmd = f.read().replace(b"\0", b" ").decode(errors="replace")
            with open(f"/proc/{pid}/status") as f:
                zombie = any(line.startswith("State:") and "Z" in line for line in f)
        except (FileNotFoundError, ProcessLookupError):
            continue
        if text in cmd and not zombie:
            out.append(cmd)
    return out


def run_demo(data_dir, port):
    return subprocess.run(
        [sys.executable, "-m", "hpcbridge.cli", "demo", "--headless", "--port", str(port),
         "--data-dir", str(data_dir)], capture_output=True, text=True, timeout=300)


def test_headless_demo_runs_a_job_and_cleans_up(tmp_path):
    data_dir = tmp_path / "demo"
    result = run_demo(data_dir, free_port())
    assert result.returncode == 0, result.stdout + result.stderr
    assert "succeeded" in result.stdout
    line = next(x for x in result.stdout.splitlines() if x.startswith("result:"))
    summary = json.loads(line.split(":", 1)[1])
    assert summary == {**summary, "limit": 2_000_000, "count": 148933, "largest": 1999993}
    # the result file was really downloaded through the API
    downloads = list((data_dir / "downloads").glob("*/result/summary.json"))
    assert len(downloads) == 1 and json.loads(downloads[0].read_text())["count"] == 148933
    # no orphans: nothing started by the demo is still running
    assert _processes_mentioning(str(data_dir)) == []


def test_second_run_works(tmp_path):
    data_dir = tmp_path / "demo"
    for _ in range(2):
        result = run_demo(data_dir, free_port())
        assert result.returncode == 0, result.stdout + result.stderr


# --- stopping: signals, and what a killed demo leaves behind ----------------------------------
def start_demo(data_dir, port) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "hpcbridge.cli", "demo", "--headless", "--port", str(port),
         "--data-dir", str(data_dir)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})


def wait_running(proc, data_dir, port, timeout=60) -> dict:
    """The demo's pid file once the middleware answers (the sample job then runs)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.stdout.read()
        try:
            state = json.loads((data_dir / "demo.pid").read_text())
            if len(state["children"]) == 2 and httpx.get(
                    f"http://127.0.0.1:{port}/api/v1/health", timeout=1).status_code == 200:
                return state
        except (OSError, ValueError, httpx.TransportError):
            pass
        time.sleep(0.2)
    raise AssertionError("the demo did not start")


def running(state: dict) -> list[int]:
    """The pids of the pid file (demo, children, embedded Redis) that still run."""
    out = []
    for entry in [state["demo"], *state["children"], state["redis"]]:
        try:
            proc = psutil.Process(entry["pid"])
            if abs(proc.create_time() - entry["created"]) < 1 and \
                    proc.status() != psutil.STATUS_ZOMBIE:
                out.append(entry["pid"])
        except psutil.NoSuchProcess:
            pass
    return out


def wait_gone(state: dict, timeout: float) -> list[int]:
    deadline = time.monotonic() + timeout
    while running(state) and time.monotonic() < deadline:
        time.sleep(0.2)
    return running(state)


@pytest.mark.parametrize("sig", [signal.SIGHUP, signal.SIGTERM])
def test_a_signal_stops_every_process_of_the_demo(tmp_path, sig):
    data_dir, port = tmp_path / "demo", free_port()
    proc = start_demo(data_dir, port)
    try:
        state = wait_running(proc, data_dir, port)
        assert len(running(state)) == 4  # demo, middleware, maintainer, embedded Redis
        started = time.monotonic()
        proc.send_signal(sig)
        assert wait_gone(state, 15) == []
        assert time.monotonic() - started < 15
        assert proc.wait(5) == 0
        assert _processes_mentioning(str(data_dir)) == []
    finally:
        proc.kill()
        proc.wait()


def test_a_demo_killed_outright_is_cleaned_up_by_the_next(tmp_path):
    data_dir, port = tmp_path / "demo", free_port()
    proc = start_demo(data_dir, port)
    state = wait_running(proc, data_dir, port)
    proc.kill()  # kill -9: nothing of the demo's own clean-up runs
    proc.wait()
    assert len(running(state)) == 3  # its middleware, maintainer and Redis live on
    result = run_demo(data_dir, port)  # the same port and data dir
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    assert "left by an earlier demo" in result.stdout
    assert wait_gone(state, 5) == []
    assert _processes_mentioning(str(data_dir)) == []
