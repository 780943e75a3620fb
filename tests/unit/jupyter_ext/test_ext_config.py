"""The extension's settings: where the middleware is and which token it gets."""
from __future__ import annotations

import pytest

from hpcbridge.jupyter_ext import _jupyter_server_extension_points
from hpcbridge.jupyter_ext.extension import HPCBridgeExtension


@pytest.fixture
def env(monkeypatch):
    for name in ("HPCBRIDGE_URL", "HPCBRIDGE_TOKEN", "JUPYTERHUB_API_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def test_defaults_come_from_the_hub_spawned_environment(env):
    env.setenv("HPCBRIDGE_URL", "http://mw:8710/")
    env.setenv("JUPYTERHUB_API_TOKEN", "hub-token")
    app = HPCBridgeExtension()
    assert (app.middleware_url, app.token) == ("http://mw:8710/", "hub-token")
    assert app.api_url == "http://mw:8710/api/v1"
    env.setenv("HPCBRIDGE_TOKEN", "own-token")  # an explicit token wins
    assert HPCBridgeExtension().token == "own-token"


def test_without_environment_the_local_middleware_and_no_token(env):
    app = HPCBridgeExtension()
    assert app.api_url == "http://127.0.0.1:8710/api/v1" and app.token == ""
    assert HPCBridgeExtension(middleware_url="http://x/api/v1/").api_url == "http://x/api/v1"


def test_routes_of_the_extension(env):
    [point] = _jupyter_server_extension_points()
    assert point["module"] == "hpcbridge.jupyter_ext" and point["app"] is HPCBridgeExtension
    app = HPCBridgeExtension()
    app.initialize_handlers()
    routes = {pattern: handler.__name__ for pattern, handler in app.handlers}
    # the session proxy comes first: the general forwarder's pattern matches it too
    assert app.handlers[0][1].__name__ == "SessionProxyHandler"
    assert routes == {r"/hpcbridge/api/(sessions/[^/]+/proxy/.*)": "SessionProxyHandler",
                      r"/hpcbridge/api/(.*)": "ForwardHandler",
                      r"/hpcbridge/local/upload": "LocalUploadHandler",
                      r"/hpcbridge/local/download": "LocalDownloadHandler"}
