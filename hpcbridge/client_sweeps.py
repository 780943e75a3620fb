"""The SDK's calls for parameter sweeps: client.sweep(app, params=[...]) -> Sweep.
Mixed into hpcbridge.client.Client (uses its _json/_request).

    sweep = client.sweep("hello", grid={"lines": [1, 2, 3], "delay": {"range": [0, 1, 0.5]}})
    sweep.wait()                  # one progress bar over every element
    sweep.download("results/")    # results/<element index>/...
"""
from __future__ import annotations

import os
import time
import uuid
from typing import Any

from .errors import JobFailed
from .lifecycle import JobStatus
from .schemas import JobInfo, ResultEntry
from .schemas_sweeps import SweepInfo

PAGE = 1000  # elements per request when listing them all (the API's largest page)


class SweepCalls:
    def sweep(self, app: str, params: list[dict] | None = None, grid: dict | None = None,
              base: dict | None = None, hpc: str | None = None,
              resources: dict | None = None, throttle: int | None = None,
              upload: str | None = None, notify: dict | None = None) -> Sweep:
        """Submit a sweep: `params`, one parameter set per element, or `grid`, name ->
        values or {"range": [start, stop, step]}, every combination over `base`. Every
        point is checked before anything runs (ValidationError names a bad one). `upload`
        is a local file or folder, sent once and shared by every element. `notify`
        ({"webhook": url, "email": address}) is told once, when the whole sweep has
        ended."""
        upload_id = self.upload(upload) if upload else None
        body: dict[str, Any] = {"app": app, "hpc": hpc, "resources": resources or {},
                                "throttle": throttle, "upload": upload_id,
                                "notify": notify or None}
        if params is not None:
            body["params"] = list(params)
        if grid is not None:
            body["grid"] = grid
            body["base"] = base or {}
        key = {"Idempotency-Key": uuid.uuid4().hex}  # a retried cut POST makes one sweep
        return Sweep(self, SweepInfo(**self._json("POST", "sweeps", json=body, headers=key,
                                                  retry=True)))

    def sweeps(self, limit: int = 50) -> list[Sweep]:
        """Your sweeps, newest first."""
        data = self._json("GET", "sweeps", params={"limit": limit})
        return [Sweep(self, SweepInfo(**s)) for s in data["sweeps"]]

    def get_sweep(self, sweep_id: str) -> Sweep:
        return Sweep(self, SweepInfo(**self._json("GET", f"sweeps/{sweep_id}")))


class Sweep:
    """One sweep. Attributes of SweepInfo (size, counts, progress, done…) read through;
    its elements are ordinary jobs (`jobs()`)."""

    def __init__(self, client, info: SweepInfo):
        self._client, self.info = client, info

    def __getattr__(self, name):
        if name.startswith("_") or name == "info":
            raise AttributeError(name)
        return getattr(self.info, name)

    def refresh(self) -> Sweep:
        self.info = SweepInfo(**self._client._json("GET", f"sweeps/{self.info.id}"))
        return self

    def jobs(self, status: str | list[str] | None = None):
        """Every element (hpcbridge.client.Job) in index order, optionally of some
        statuses."""
        from .client import Job
        if isinstance(status, str):
            status = [status]
        out, offset = [], 0
        while True:
            params = {"limit": PAGE, "offset": offset}
            if status:
                params["status"] = ",".join(status)
            page = self._client._json("GET", f"sweeps/{self.info.id}/jobs", params=params)
            out += [Job(self._client, JobInfo(**j)) for j in page["jobs"]]
            offset += len(page["jobs"])
            if not page["jobs"] or offset >= page["total"]:
                return out

    def wait(self, progress: bool = True, timeout: float | None = None, poll: float = 1.0,
             raise_on_failure: bool = False) -> Sweep:
        """Wait until every element ended, with one progress bar over all of them (the
        counts by status beside it). The sweep's counts are one small request, so it is
        asked every `poll` seconds rather than following each element's events."""
        from tqdm.auto import tqdm  # only when waiting: importing it costs
        deadline = None if timeout is None else time.monotonic() + timeout
        bar = tqdm(total=self.info.size, desc="sweep", disable=not progress, unit="job",
                   bar_format="{desc} {bar} {n}/{total} [{elapsed}]{postfix}")
        try:
            while True:
                self.refresh()
                bar.n = self.info.finished
                bar.set_postfix_str(_counts_text(self.info.counts), refresh=True)
                if self.info.done:
                    break
                if deadline is not None and time.monotonic() >= deadline:
                    raise TimeoutError(f"sweep {self.info.id}: {self.info.finished} of "
                                       f"{self.info.size} ended after {timeout} s")
                time.sleep(poll if deadline is None else
                           max(0.0, min(poll, deadline - time.monotonic())))
        finally:
            bar.close()
        ok = self.info.counts.get(JobStatus.SUCCEEDED.value, 0)
        if raise_on_failure and ok != self.info.size:
            raise JobFailed(f"sweep {self.info.id}: {ok} of {self.info.size} succeeded "
                            f"({_counts_text(self.info.counts)})")
        return self

    def cancel(self) -> Sweep:
        """Cancel every element still active (the ended ones stay as they are)."""
        self.info = SweepInfo(**self._client._json("POST", f"sweeps/{self.info.id}/cancel"))
        return self

    def results(self) -> dict[int, list[ResultEntry]]:
        """Each succeeded element's result files, by element index."""
        return {job.sweep_index: job.results()
                for job in self.jobs(status=JobStatus.SUCCEEDED.value)}

    def download(self, dest: str | None = None) -> dict[int, str]:
        """Download each succeeded element's results into dest/<index> (zero-padded, so
        the folders sort in element order); {index: folder}. Default dest:
        ./hpcbridge-results/<sweep id>."""
        dest = dest or os.path.join("hpcbridge-results", self.info.id)
        width = len(str(max(self.info.size - 1, 0)))
        return {job.sweep_index: job.download(os.path.join(dest, f"{job.sweep_index:0{width}d}"))
                for job in self.jobs(status=JobStatus.SUCCEEDED.value)}

    def __repr__(self) -> str:
        i = self.info
        return (f"<Sweep {i.id[:8]} {i.app}@{i.hpc} {i.finished}/{i.size} ended "
                f"({_counts_text(i.counts)})>")


def _counts_text(counts: dict[str, int]) -> str:
    """'3 running, 5 succeeded' in the lifecycle's order."""
    order = [s.value for s in JobStatus]
    return ", ".join(f"{counts[s]} {s}" for s in order if counts.get(s)) or \
        ", ".join(f"{n} {s}" for s, n in counts.items())

