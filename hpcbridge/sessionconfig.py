"""Settings of interactive sessions (issue #22), read by the middleware and the maintainer
from the same `hpcbridge_config.py`: `c.SessionSettings.idle_timeout = 1800`."""
from __future__ import annotations

from traitlets import Float, Int
from traitlets.config import Configurable


class SessionSettings(Configurable):
    """Quota, limits and deadlines of interactive sessions."""

    default_quota_seconds = Float(20 * 3600.0, allow_none=True, help="""Wall seconds of
        sessions each user may use (charged while a session's job runs); None = no limit.
        An administrator sets a user's own with PUT /admin/users/{name}/session-quota."""
                                  ).tag(config=True)
    max_per_user = Int(3, help="""Sessions one user may have starting or running at once."""
                       ).tag(config=True)
    default_time_minutes = Int(120, help="""The scheduler time limit of a session whose app
        sets no time rule and whose request gives none (capped by the quota left)."""
                               ).tag(config=True)
    idle_timeout = Float(3600.0, help="""A running session with no activity (a request
        through its proxy, a keepalive) for this many seconds is stopped."""
                         ).tag(config=True)
    start_timeout = Float(300.0, help="""A session whose service does not listen this many
        seconds after its job started is stopped (its job cancelled) with the reason."""
                          ).tag(config=True)
    queue_timeout = Float(3600.0, help="""A session whose job has not started this many
        seconds after it was requested (the HPC has no room) is stopped, its job cancelled."""
                          ).tag(config=True)
    charge_period = Float(60.0, help="""Time used by a running session is charged to its
        user this often (and at its stop): a crash loses at most one period."""
                          ).tag(config=True)
    activity_write_seconds = Float(30.0, help="""The proxy records activity of a session at
        most this often (not per request).""").tag(config=True)
    proxy_connect_timeout = Float(10.0, help="""Seconds the proxy waits for a forwarded
        connection to the service to open.""").tag(config=True)
    proxy_response_timeout = Float(300.0, help="""Seconds the proxy waits for the service's
        response headers (and between two pieces of a streamed body).""").tag(config=True)
    max_port_file_bytes = Int(4096, help="""Largest session file (node and port) read from
        the work dir; a larger one is not the service's.""").tag(config=True)
