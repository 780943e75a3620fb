"""The Python SDK: hpcbridge from a notebook.

    from hpcbridge import Client
    client = Client()                      # URL and token from the environment
    job = client.submit("primes", params={"limit": 100000})
    job.wait()                             # a progress bar
    print(job.logs())
    job.download("results/")
"""
from __future__ import annotations

import html
import json
import os
import tempfile
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
from tenacity import Retrying, retry_if_exception_type, stop_after_attempt, wait_exponential

from .archive import ArchiveError, extract, zip_folder
from .client_sessions import SessionCalls
from .client_sweeps import SweepCalls
from .errors import ConfigurationError, HPCBridgeError, JobFailed, Unavailable, error_for
from .lifecycle import FINAL, JobStatus
from .progress import ProgressBar, sse_events
from .schemas import AppInfo, EventInfo, HPCInfo, JobInfo, Me, ResultEntry


class Client(SweepCalls, SessionCalls):
    """A connection to the hpcbridge middleware.

    url: the middleware (default $HPCBRIDGE_URL); token: a JupyterHub token (default
    $HPCBRIDGE_TOKEN, then $JUPYTERHUB_API_TOKEN, which every hub-spawned server has).
    """

    def __init__(self, url: str | None = None, token: str | None = None,
                 timeout: float = 30.0, retries: int = 3):
        url = url or os.environ.get("HPCBRIDGE_URL")
        token = token or os.environ.get("HPCBRIDGE_TOKEN") or \
            os.environ.get("JUPYTERHUB_API_TOKEN")
        if not url:
            raise ConfigurationError(
                "hpcbridge does not know where its middleware is: set HPCBRIDGE_URL "
                "(e.g. http://127.0.0.1:8710; on a JupyterHub the administrator sets it) "
                "or pass Client(url=...)")
        if not token:
            raise ConfigurationError(
                "hpcbridge has no token: set HPCBRIDGE_TOKEN (or run inside a JupyterHub "
                "server, which sets JUPYTERHUB_API_TOKEN) or pass Client(token=...)")
        base = url.rstrip("/")
        self.url = base if base.endswith("/api/v1") else base + "/api/v1"
        self._http = httpx.Client(
            base_url=self.url + "/", timeout=timeout,
            headers={"Authorization": f"token {token}", "User-Agent": "hpcbridge-sdk"},
            transport=httpx.HTTPTransport(retries=retries))  # retries connection errors

    # --- plumbing -------------------------------------------------------------------
    def _unreachable(self, exc: httpx.TransportError) -> Unavailable:
        return Unavailable(f"cannot reach the hpcbridge middleware at {self.url}: "
                           f"{exc or type(exc).__name__}")

    def _request(self, method: str, path: str, retry: bool = False,
                 **kwargs) -> httpx.Response:
        """One request; with retry=True a cut connection is tried again (only for requests
        that are safe to repeat: an idempotency key makes a POST so)."""
        attempts = Retrying(retry=retry_if_exception_type(httpx.TransportError),
                            stop=stop_after_attempt(SUBMIT_ATTEMPTS if retry else 1),
                            wait=wait_exponential(multiplier=0.5, max=4), reraise=True)
        try:
            response = attempts(self._http.request, method, path, **kwargs)
        except httpx.TransportError as exc:
            raise self._unreachable(exc) from None
        if response.status_code >= 400:
            raise _error_of(response)
        return response

    def _json(self, method: str, path: str, **kwargs) -> Any:
        response = self._request(method, path, **kwargs)
        try:
            return response.json()
        except ValueError:
            raise HPCBridgeError(
                f"{response.request.url} answered {response.status_code} with something "
                f"that is not JSON ({response.headers.get('content-type', 'no type')}): "
                f"is {self.url} really the hpcbridge middleware?",
                response.status_code) from None

    def close(self) -> None:
        self._http.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # --- what is there ----------------------------------------------------------------
    def me(self) -> Me:
        return Me(**self._json("GET", "me"))

    def hpcs(self) -> list[HPCInfo]:
        return [HPCInfo(**h) for h in self._json("GET", "hpcs")]

    def apps(self) -> list[AppInfo]:
        return [AppInfo(**a) for a in self._json("GET", "apps")]

    # --- jobs -----------------------------------------------------------------------
    def submit(self, app: str, hpc: str | None = None, params: dict | None = None,
               resources: dict | None = None, upload: str | None = None,
               notify: dict | None = None) -> Job:
        """Submit a job; `upload` is a local file or folder sent along as its data;
        `notify` ({"webhook": url, "email": address}) is told when the job ends."""
        upload_id = self.upload(upload) if upload else None
        body = {"app": app, "hpc": hpc, "params": params or {}, "resources": resources or {},
                "upload": upload_id, "notify": notify or None}
        # one key per call: a retry of a cut request gets the job the first one made
        key = {"Idempotency-Key": uuid.uuid4().hex}
        return Job(self, JobInfo(**self._json("POST", "jobs", json=body, headers=key,
                                              retry=True)))

    def upload(self, path: str) -> str:
        """Send a file or folder (zipped on the fly); its upload id."""
        if not os.path.exists(path):
            raise HPCBridgeError(f"nothing to upload at {path}")
        if os.path.isfile(path):
            with open(path, "rb") as f:
                return self._json("POST", "uploads", params={"name": os.path.basename(path)},
                                  content=_chunks(f))["id"]
        with tempfile.TemporaryFile() as tmp:
            zip_folder(path, tmp)
            tmp.seek(0)
            return self._json("POST", "uploads", params={"name": "data.zip"},
                              content=_chunks(tmp))["id"]

    def jobs(self, status: str | list[str] | None = None, app: str | None = None,
             hpc: str | None = None, limit: int = 50) -> list[Job]:
        if isinstance(status, str):
            status = [status]
        params = {"limit": limit, "app": app, "hpc": hpc,
                  "status": ",".join(status) if status else None}
        data = self._json("GET", "jobs", params={k: v for k, v in params.items() if v})
        return [Job(self, JobInfo(**j)) for j in data["jobs"]]

    def job(self, job_id: str) -> Job:
        return Job(self, JobInfo(**self._json("GET", f"jobs/{job_id}")))

    def _job_changes(self, job_id: str, remaining, position: dict) -> Iterator[JobInfo]:
        """The job as it is once the event stream is open, then at each of its changes.

        `remaining()` gives the seconds left to wait (None: no limit) or raises
        TimeoutError. `position["last_event_id"]` is where the stream is resumed and is
        kept up to date; `position["connected"]` tells that a stream was opened. Ends
        when the middleware closes the stream; raises _NoStream when there is no usable
        stream, Unavailable when it cannot be reached or the stream is cut."""
        quiet = 45.0  # the middleware sends a keepalive every 15 s of quiet
        left = remaining()
        read = quiet if left is None else min(quiet, left)
        last = position.get("last_event_id")
        # the query form too: a proxy in front of the middleware may drop the header
        resume = {"params": {"last_event_id": last}, "headers": {"Last-Event-ID": last}} \
            if last else {}
        try:
            with self._http.stream("GET", "events/stream", timeout=httpx.Timeout(
                    self._http.timeout.connect, read=read), **resume) as r:
                if r.status_code >= 400:
                    r.read()
                    if r.status_code in (401, 403):
                        raise _error_of(r)
                    raise _NoStream(r.status_code)
                if not r.headers.get("content-type", "").startswith("text/event-stream"):
                    raise _NoStream("not an event stream")
                for kind, text in sse_events(r.iter_lines()):
                    if kind == "connected":
                        position["connected"] = True
                        # changes from now on come on the stream; what happened
                        # before it opened (or while it was cut) is read once
                        yield JobInfo(**self._json("GET", f"jobs/{job_id}"))
                    elif kind == "id":
                        position["last_event_id"] = text
                    elif kind == "data" and (info := _job_of(text)) and info.id == job_id:
                        yield info
                    remaining()
        except httpx.ReadTimeout:
            remaining()  # TimeoutError when the caller's time is up
            return  # else a silent stream: open a new one
        except httpx.TransportError as exc:
            raise self._unreachable(exc) from None


class Job:
    """One job. Attributes of JobInfo (status, message, exit_code…) read through."""

    def __init__(self, client: Client, info: JobInfo):
        self._client, self.info = client, info

    def __getattr__(self, name):
        if name.startswith("_") or name == "info":
            raise AttributeError(name)
        return getattr(self.info, name)

    @property
    def done(self) -> bool:
        return self.info.status in FINAL

    def refresh(self) -> Job:
        self.info = JobInfo(**self._client._json("GET", f"jobs/{self.info.id}"))
        return self

    def wait(self, progress: bool = True, timeout: float | None = None, poll: float = 1.0,
             raise_on_failure: bool = False) -> Job:
        """Wait until the job ends, showing its stage as a progress bar.

        The middleware tells: changes come on its event stream (server-sent events), so a
        waiting notebook does not poll it. Where the stream is not offered (or a proxy
        breaks it), the job is asked for every `poll` seconds instead."""
        deadline = None if timeout is None else time.monotonic() + timeout
        bar = ProgressBar(self.info.status, progress)

        def show():
            bar.show(self.info.status, self.info.message)

        def remaining() -> float | None:
            if deadline is None:
                return None
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"job {self.info.id} still {self.info.status} "
                                   f"after {timeout} s")
            return left

        try:
            self.refresh()
            show()
            self._follow(show, remaining, poll, deadline)
        finally:
            bar.close()
        if raise_on_failure and self.info.status != JobStatus.SUCCEEDED:
            raise JobFailed(f"job {self.info.id} {self.info.status}: {self.info.message}")
        return self

    def _follow(self, show, remaining, poll: float, deadline: float | None) -> None:
        """Listen to the event stream until the job ends; a cut stream is opened again
        after a pause, resuming where it stopped (a few failures in a row give up:
        Unavailable); without a stream, ask every `poll` seconds."""
        use_stream, failures = True, 0
        position: dict = {}
        while not self.done:
            if use_stream:
                position["connected"] = False
                try:
                    self._listen(show, remaining, position)
                    cut = None
                except _NoStream:
                    use_stream = False
                    continue
                except Unavailable as exc:
                    cut = exc
                failures = 0 if position["connected"] else failures + 1
                if failures > STREAM_RETRIES and cut:  # cut again and again
                    raise cut
                use_stream = failures <= STREAM_RETRIES  # else never opened: poll instead
                if use_stream and (cut or failures):
                    time.sleep(min(2.0 ** max(failures, 1), 30.0, remaining() or 30.0))
                continue
            remaining()
            time.sleep(poll if deadline is None else min(poll, remaining()))
            self.refresh()
            show()

    def _listen(self, show, remaining, position: dict) -> None:
        """Follow the job on the event stream until it ends, or the stream does (then
        look once, and the caller listens again)."""
        for info in self._client._job_changes(self.info.id, remaining, position):
            self.info = info
            show()
            if self.done:
                return
        self.refresh()
        show()

    def logs(self, stream: str = "stdout", follow: bool = False, offset: int = 0) -> str:
        """The job's output so far; with follow=True, print it as it comes until the end."""
        if follow:
            parts = []
            for chunk in self.follow_logs(stream, offset):
                print(chunk, end="", flush=True)
                parts.append(chunk)
            return "".join(parts)
        out, position = [], offset
        while True:
            data = self._client._json("GET", f"jobs/{self.info.id}/logs",
                                      params={"stream": stream, "offset": position})
            out.append(data["data"])
            if data["next_offset"] == position:
                return "".join(out)
            position = data["next_offset"]

    def follow_logs(self, stream: str = "stdout", offset: int = 0,
                    poll: float = 1.0) -> Iterator[str]:
        position = offset
        while True:
            data = self._client._json("GET", f"jobs/{self.info.id}/logs",
                                      params={"stream": stream, "offset": position})
            if data["data"]:
                yield data["data"]
            position = data["next_offset"]
            if data["complete"]:
                return
            if not data["data"]:
                time.sleep(poll)

    def events(self) -> list[EventInfo]:
        return [EventInfo(**e) for e in self._client._json("GET", f"jobs/{self.info.id}/events")]

    def cancel(self) -> Job:
        self.info = JobInfo(**self._client._json("POST", f"jobs/{self.info.id}/cancel"))
        return self

    def results(self) -> list[ResultEntry]:
        return [ResultEntry(**r) for r in
                self._client._json("GET", f"jobs/{self.info.id}/results")]

    def download(self, dest: str | None = None) -> str:
        """Download every result into `dest` (default ./hpcbridge-results/<job id>)."""
        dest = dest or os.path.join("hpcbridge-results", self.info.id)
        os.makedirs(dest, exist_ok=True)
        with tempfile.TemporaryFile() as tmp:
            try:
                with self._client._http.stream("GET", f"jobs/{self.info.id}/results/") as r:
                    if r.status_code >= 400:
                        r.read()
                        raise _error_of(r)
                    for chunk in r.iter_bytes():
                        tmp.write(chunk)
            except httpx.TransportError as exc:
                raise Unavailable(f"download interrupted: {exc}") from None
            tmp.seek(0)
            try:  # the server's names, checked all the same
                extract(tmp, dest)
            except ArchiveError as exc:
                raise HPCBridgeError(f"refusing the results of job {self.info.id}: "
                                     f"{exc}") from None
        return dest

    def __repr__(self) -> str:
        return f"<Job {self.info.id[:8]} {self.info.app}@{self.info.hpc} {self.info.status}>"

    def _repr_html_(self) -> str:
        i = self.info
        rows = [("job", i.id), ("app", i.app), ("hpc", i.hpc), ("status", i.status),
                ("message", i.message or ""), ("created", i.created_at),
                ("finished", i.finished_at or ""), ("exit code", "" if i.exit_code is None
                                                    else i.exit_code)]
        cells = "".join(f"<tr><th style='text-align:left'>{html.escape(str(k))}</th>"
                        f"<td style='text-align:left'>{html.escape(str(v))}</td></tr>"
                        for k, v in rows)
        return f"<table class='hpcbridge-job'>{cells}</table>"


SUBMIT_ATTEMPTS = 4  # a cut POST /jobs is sent again this often in all, with the same key
STREAM_RETRIES = 5  # a cut event stream is opened again this often in a row (1…30 s apart)


class _NoStream(Exception):
    """The middleware (or a proxy before it) offers no usable event stream."""


def _error_of(response: httpx.Response) -> HPCBridgeError:
    """The typed error of an answer >= 400, whether its body is the API's JSON or not
    (an HTML page of a proxy in front of the middleware)."""
    try:
        body = response.json()
    except ValueError:
        body = None
    if not isinstance(body, dict):
        text = response.text.strip()[:500]
        body = {"message": f"HTTP {response.status_code} {response.reason_phrase}"
                           + (f": {text}" if text else "")}
    return error_for(response.status_code, body)


def _job_of(text: str) -> JobInfo | None:
    """The job of an event's data; None for data that is not one."""
    try:
        return JobInfo(**json.loads(text))
    except (ValueError, TypeError):
        return None


def _chunks(f, size: int = 1 << 20):
    while chunk := f.read(size):
        yield chunk
