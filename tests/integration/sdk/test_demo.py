"""The README's first command, headless: the whole system on embedded defaults."""
import json
import os
import subprocess
import sys

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
