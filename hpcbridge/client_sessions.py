"""The SDK's calls for interactive sessions: client.start_session(app, ...) -> Session.
Mixed into hpcbridge.client.Client (uses its _json/_request)."""
from __future__ import annotations


class SessionCalls:
    pass
