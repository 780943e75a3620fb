"""The `hpcbridge` ExtensionApp and its configuration."""
from __future__ import annotations

import os

from jupyter_server.extension.application import ExtensionApp
from traitlets import Float, Unicode, default

from .local import LocalDownloadHandler, LocalUploadHandler
from .proxy import ForwardHandler
from .sessions import SessionProxyHandler


class HPCBridgeExtension(ExtensionApp):
    name = "hpcbridge"

    middleware_url = Unicode(help="URL of the hpcbridge middleware. Default: $HPCBRIDGE_URL "
                                  "(a JupyterHub sets it for spawned servers), else "
                                  "http://127.0.0.1:8710.").tag(config=True)

    @default("middleware_url")
    def _middleware_url(self):
        return os.environ.get("HPCBRIDGE_URL", "http://127.0.0.1:8710")

    token = Unicode(help="Token sent to the middleware. Default: $HPCBRIDGE_TOKEN, else the "
                         "user's $JUPYTERHUB_API_TOKEN of a hub-spawned server.").tag(config=True)

    @default("token")
    def _token(self):
        return os.environ.get("HPCBRIDGE_TOKEN") or os.environ.get("JUPYTERHUB_API_TOKEN", "")

    connect_timeout = Float(10.0, help="Seconds to wait for the middleware to accept."
                            ).tag(config=True)
    request_timeout = Float(3600.0, help="Seconds a forwarded request may take (event "
                                         "streams and large downloads).").tag(config=True)
    results_dir = Unicode("hpcbridge-results", help="Folder (under the server's root) that "
                                                    "downloaded results go to.").tag(config=True)

    def initialize_handlers(self):
        self.handlers.extend([
            # a session's service (HTTP and WebSocket); before the general forwarder
            (r"/hpcbridge/api/(sessions/[^/]+/proxy/.*)", SessionProxyHandler),
            (r"/hpcbridge/api/(.*)", ForwardHandler),
            (r"/hpcbridge/local/upload", LocalUploadHandler),
            (r"/hpcbridge/local/download", LocalDownloadHandler),
        ])

    @property
    def api_url(self) -> str:
        base = self.middleware_url.rstrip("/")
        return base if base.endswith("/api/v1") else base + "/api/v1"

    async def stop_extension(self):
        # nothing to keep: jobs live in the middleware and outlive this server
        pass
