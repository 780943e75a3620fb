"""CyberGIS-Compute's v2 REST API (the routes `cybergis-compute-client` calls), mapped onto
hpcbridge's jobs, auth, validation and store (issue #23)."""
from __future__ import annotations

from traitlets import Unicode
from traitlets.config import Configurable


class CyberGISCompat(Configurable):
    prefix = Unicode("/v2", help="URL prefix of the CyberGIS-Compute v2 API; empty turns it "
                                 "off.").tag(config=True)

    def routes(self, base_url: str) -> list[tuple]:
        """(pattern, handler) pairs under the middleware's base URL."""
        return []
