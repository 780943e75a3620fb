"""Jobs as local processes: the embedded default. A real executor, not a mock.

It runs the same batch scripts as Slurm (the #SBATCH lines are comments to bash) in a
detached session, so jobs outlive the worker that started them. Each job keeps its state
in `<work_root>/.hpcbridge-local/<id>/`: name, pid, exit_code, cancelled, times.
"""
from __future__ import annotations

import dataclasses
import os
import signal
import time
from collections.abc import Sequence

from ..copy import CopyLimits
from ..errors import SchedulerError
from ..spec import JobSpec, render_batch_script
from ..state import CANCELLED, FAILED, RUNNING, SUCCEEDED, UNKNOWN, JobState
from ..transport import LocalTransport
from .base import SchedulerHandler

# Fixed shell text; every value arrives as a positional argument, never spliced in.
WRAPPER = r"""
state="$1"; script="$2"; out="$3"; err="$4"; limit="$5"; workdir="$6"
(
  echo "$BASHPID" > "$state/pid.tmp" && mv "$state/pid.tmp" "$state/pid"
  date +%s > "$state/started"
  cd "$workdir" || exit 1
  timeout --signal=TERM --kill-after=5 "$limit" bash "$script" > "$out" 2> "$err"
  code=$?
  date +%s > "$state/finished"
  echo "$code" > "$state/exit_code.tmp" && mv "$state/exit_code.tmp" "$state/exit_code"
) </dev/null >/dev/null 2>&1 &
"""
TIMEOUT_EXIT = 124


class LocalHandler(SchedulerHandler):

    @classmethod
    def default_transport(cls, config):
        return LocalTransport(config.work_root, CopyLimits.of(config))

    @property
    def _state_root(self) -> str:
        return os.path.join(self.transport.work_root, ".hpcbridge-local")

    def _state(self, job_id: str) -> str:
        if not job_id.isdigit():
            raise SchedulerError(f"not a local job id: {job_id!r}")
        return os.path.join(self._state_root, job_id)

    async def submit(self, spec: JobSpec) -> str:
        await self.transport.resolve_work_root()
        script = f"{spec.workdir}/job.sbatch"
        text = render_batch_script(spec, self.config.batch_prelude)
        await self.transport.write_bytes(script, text.encode(), 0o700)
        while True:  # the state folder claims the id, also against other workers
            job_id = str(time.time_ns() // 1000)
            state = self._state(job_id)
            try:
                os.makedirs(state)
                break
            except FileExistsError:
                continue
        with open(os.path.join(state, "name"), "w") as f:
            f.write(spec.name)
        result = await self.transport.run([
            "setsid", "bash", "-c", WRAPPER, "hpcbridge-local", state, script,
            spec.stdout_path, spec.stderr_path, f"{spec.time_minutes * 60}s", spec.workdir])
        if result.exit_status != 0:
            raise SchedulerError(f"could not start the job: {result.stderr.strip()}")
        return job_id

    def _read(self, job_id: str, name: str) -> str | None:
        try:
            with open(os.path.join(self._state(job_id), name)) as f:
                return f.read().strip()
        except FileNotFoundError:
            return None

    def _one(self, job_id: str) -> JobState:
        return dataclasses.replace(self._status(job_id), name=self._read(job_id, "name"))

    def _status(self, job_id: str) -> JobState:
        if not os.path.isdir(self._state(job_id)):
            return JobState(job_id, UNKNOWN)
        started, finished = self._read(job_id, "started"), self._read(job_id, "finished")
        elapsed = None
        if started:
            elapsed = int(finished or time.time()) - int(started)
        if self._read(job_id, "cancelled") is not None:
            return JobState(job_id, CANCELLED, "CANCELLED", None, "cancelled", elapsed, 1)
        code = self._read(job_id, "exit_code")
        if code is not None:
            code = int(code)
            if code == 0:
                return JobState(job_id, SUCCEEDED, "COMPLETED", 0, None, elapsed, 1)
            if code == TIMEOUT_EXIT:
                return JobState(job_id, FAILED, "TIMEOUT", code,
                                "TIMEOUT: the job exceeded its time limit", elapsed, 1)
            return JobState(job_id, FAILED, "FAILED", code, f"exit code {code}", elapsed, 1)
        pid = self._read(job_id, "pid")
        if pid is None:
            return JobState(job_id, RUNNING, "CONFIGURING", elapsed_seconds=elapsed)
        if _alive(int(pid)):
            return JobState(job_id, RUNNING, "RUNNING", elapsed_seconds=elapsed, cpus=1)
        # the process is gone without writing its exit code (killed, machine rebooted)
        return JobState(job_id, FAILED, "NODE_FAIL", None,
                        "NODE_FAIL: the job's process vanished", elapsed, 1)

    async def status_many(self, ids: Sequence[str]) -> dict[str, JobState]:
        return {i: self._one(i) for i in dict.fromkeys(ids)}

    async def cancel(self, scheduler_id: str) -> None:
        state = self._state(scheduler_id)
        if not os.path.isdir(state) or self._read(scheduler_id, "exit_code") is not None:
            return
        with open(os.path.join(state, "cancelled"), "w") as f:
            f.write(str(int(time.time())))
        pid = self._read(scheduler_id, "pid")
        if pid:
            _kill_session(int(pid))

    async def find_by_name(self, name: str) -> str | None:
        try:
            ids = sorted(os.listdir(self._state_root))
        except FileNotFoundError:
            return None
        for job_id in ids:
            if job_id.isdigit() and self._read(job_id, "name") == name:
                return job_id
        return None


def _alive(pid: int) -> bool:
    """True if the process runs (a zombie counts as gone)."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("State:"):
                    return "Z" not in line.split()[1]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return True


def _kill_session(pid: int) -> None:
    """SIGTERM every process of the job's session (`timeout` makes its own group)."""
    try:
        sid = os.getsid(pid)
    except ProcessLookupError:
        return
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            if int(fields[3]) == sid:  # field 6 of stat: the session id
                os.kill(int(entry), signal.SIGTERM)
        except (FileNotFoundError, ProcessLookupError, PermissionError, IndexError, ValueError):
            continue
