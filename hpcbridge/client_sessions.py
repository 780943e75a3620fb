"""The SDK's calls for interactive sessions: client.start_session(app, ...) -> Session.
Mixed into hpcbridge.client.Client (uses its _json/_request).

    session = client.start_session("jupyterlab", resources={"time": 60})
    session.wait_ready()          # a status line until it runs
    print(session.url)            # open it in a browser (the middleware's proxy)
    session.stop()
"""
from __future__ import annotations

import html
import time
from urllib.parse import urlsplit

from .errors import HPCBridgeError
from .schemas import EventInfo
from .schemas_sessions import SessionInfo, SessionQuota

API_PATH = "/api/v1"


class SessionStopped(HPCBridgeError):
    """Session.wait_ready(): the session ended before its service was ready."""


class SessionCalls:
    def start_session(self, app: str, hpc: str | None = None, params: dict | None = None,
                      resources: dict | None = None) -> Session:
        """Start an interactive session of a service app; it is `starting` until its
        service listens (see Session.wait_ready)."""
        body = {"app": app, "params": params or {}, "resources": resources or {}}
        if hpc:
            body["hpc"] = hpc
        return Session(self, SessionInfo(**self._json("POST", "sessions", json=body)))

    def sessions(self, all_users: bool = False) -> list[Session]:
        """Your sessions, newest first (an admin's all_users=True: everybody's)."""
        params = {"all": "1"} if all_users else None
        return [Session(self, SessionInfo(**s))
                for s in self._json("GET", "sessions", params=params)]

    def session(self, session_id: str) -> Session:
        return Session(self, SessionInfo(**self._json("GET", f"sessions/{session_id}")))

    def session_quota(self) -> SessionQuota:
        """Session time allowed (None: no limit) and used, in seconds."""
        return SessionQuota(**self._json("GET", "sessions/quota"))


class Session:
    """One interactive session. Attributes of SessionInfo (status, message…) read through."""

    def __init__(self, client, info: SessionInfo):
        self._client, self.info = client, info

    def __getattr__(self, name):
        if name.startswith("_") or name == "info":
            raise AttributeError(name)
        return getattr(self.info, name)

    @property
    def url(self) -> str:
        """Where the service answers: the middleware's proxy, as an absolute URL."""
        return absolute_url(self._client.url, self.info.url)

    @property
    def ready(self) -> bool:
        return self.info.status == "running"

    def refresh(self) -> Session:
        self.info = SessionInfo(**self._client._json("GET", f"sessions/{self.info.id}"))
        return self

    def wait_ready(self, timeout: float = 600, progress: bool = True,
                   poll: float = 1.0) -> Session:
        """Wait until the service runs (a status line meanwhile). Raises SessionStopped
        with the reason when the session ends instead, TimeoutError after `timeout` s."""
        deadline = time.monotonic() + timeout
        line = _StatusLine(progress)
        try:
            while True:
                line.show(self.info.status, self.info.message)
                if self.info.status == "running":
                    return self
                if self.info.status in ("stopping", "stopped"):
                    raise SessionStopped(f"session {self.info.id} {self.info.status} before "
                                         f"it was ready: {self._reason()}")
                if time.monotonic() >= deadline:
                    raise TimeoutError(f"session {self.info.id} still {self.info.status} "
                                       f"after {timeout} s")
                time.sleep(max(0.0, min(poll, deadline - time.monotonic())))
                self.refresh()
        finally:
            line.close()

    def _reason(self) -> str:
        if self.info.message:
            return self.info.message
        events = self.events()
        return events[-1].message if events else "no reason given"

    def keepalive(self) -> None:
        """Record activity: the maintainer's idle stop waits again."""
        self._client._request("POST", f"sessions/{self.info.id}/keepalive")

    def stop(self) -> Session:
        """Ask for the stop (the scheduler's job is cancelled); `stopping`, then `stopped`."""
        self.info = SessionInfo(**self._client._json("DELETE", f"sessions/{self.info.id}"))
        return self

    def events(self) -> list[EventInfo]:
        return [EventInfo(**e) for e in
                self._client._json("GET", f"sessions/{self.info.id}/events")]

    def __repr__(self) -> str:
        i = self.info
        return f"<Session {i.id[:8]} {i.app}@{i.hpc} {i.status}>"

    def _repr_html_(self) -> str:
        i = self.info
        link = (f"<a href='{html.escape(self.url)}' target='_blank'>open</a>"
                if self.ready else "")
        rows = [("session", i.id), ("app", i.app), ("hpc", i.hpc), ("status", i.status),
                ("message", i.message or ""), ("url", link)]
        cells = "".join(f"<tr><th style='text-align:left'>{html.escape(k)}</th>"
                        f"<td style='text-align:left'>"
                        f"{v if k == 'url' else html.escape(str(v))}</td></tr>"
                        for k, v in rows)
        return f"<table class='hpcbridge-session'>{cells}</table>"


def absolute_url(api_url: str, path: str) -> str:
    """The session's proxy path (as the middleware sees it: /api/v1/...) under the URL
    the client reaches the API at (which may carry a prefix before /api/v1)."""
    if path.startswith(("http://", "https://")):
        return path
    if path.startswith(API_PATH + "/") and api_url.endswith(API_PATH):
        return api_url + path[len(API_PATH):]
    parts = urlsplit(api_url)
    return f"{parts.scheme}://{parts.netloc}{path}"


class _StatusLine:
    """A session's status and message on one line (tqdm, as the jobs' progress bar)."""

    def __init__(self, enabled: bool):
        from tqdm.auto import tqdm  # only when waiting: importing it costs
        self._bar = tqdm(total=1, disable=not enabled,
                         bar_format="{desc:<10} [{elapsed}]{postfix}")

    def show(self, status: str, message: str | None) -> None:
        self._bar.set_description_str(status)
        self._bar.set_postfix_str((message or "")[:70])

    def close(self) -> None:
        self._bar.close()
