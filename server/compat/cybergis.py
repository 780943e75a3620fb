"""CyberGIS-Compute's v2 REST API (the routes `cybergis-compute-client` calls), mapped onto
hpcbridge's jobs, auth, validation and store (issue #23). docs/cybergis-compat.md tells how
a notebook points the client here and what differs.

The handlers: server/compat/cghandlers.py (base, site, user), cgjobs.py (jobs, folders);
the translations: cgmap.py, cgviews.py; not yet submitted jobs: cgdrafts.py."""
from __future__ import annotations

import os

from traitlets import Dict, Float, Int, List, Unicode
from traitlets.config import Configurable

from . import cghandlers as H
from . import cgjobs as J
from .cgmap import host_of_url, normalize_host


class CyberGISCompat(Configurable):
    prefix = Unicode("/v2", help="URL prefix of the CyberGIS-Compute v2 API; empty turns it "
                                 "off.").tag(config=True)
    jupyterhub_hosts = List(Unicode(), help="JupyterHub hosts (host[:port], scheme optional) "
                            "whose tokens the CyberGIS routes accept: the host a notebook "
                            "puts in jupyterhubApiToken. The token is then checked with the "
                            "middleware's authenticator. Default: the host of the hub API URL "
                            "the authenticator uses (HubAuthenticator.hub_api_url, else "
                            "$JUPYTERHUB_API_URL).").tag(config=True)
    draft_ttl = Float(86400.0, help="Seconds a created but not yet submitted CyberGIS job "
                                    "is kept (from its last change).").tag(config=True)
    log_tail_bytes = Int(256 * 1024, help="Most bytes of each log stream a CyberGIS job "
                                          "object carries (its end); the whole log is on the "
                                          "native logs route.").tag(config=True)
    max_jobs_listed = Int(500, help="Most jobs (and result folders) GET /user/job and "
                                    "GET /folder list: the newest.").tag(config=True)
    announcements = List(Dict(), help="What GET /announcement answers: dicts with message, "
                                      "poster and time_stamp.").tag(config=True)

    def allowed_hosts(self, ctx) -> list[str]:
        """The normalized hub hosts whose tokens are accepted."""
        if self.jupyterhub_hosts:
            return [normalize_host(h) for h in self.jupyterhub_hosts]
        url = getattr(ctx.authenticator, "hub_api_url", "") or \
            os.environ.get("JUPYTERHUB_API_URL", "")
        host = host_of_url(url)
        return [host] if host else []

    def routes(self, base_url: str) -> list[tuple]:
        """(pattern, handler, kwargs) under the middleware's base URL."""
        if not self.prefix.strip("/"):
            return []
        p = base_url.rstrip("/") + "/" + self.prefix.strip("/")
        jid, fid = r"(?P<job_id>[^/]+)", r"(?P<folder_id>[^/]+)"
        table = [
            ("/hpc", H.HPCHandler), ("/git", H.GitHandler),
            ("/maintainer", H.MaintainerHandler), ("/container", H.ContainerHandler),
            ("/whitelist", H.AllowlistHandler), ("/allowlist", H.AllowlistHandler),
            ("/announcement", H.AnnouncementHandler),
            ("/user", H.UserHandler), ("/user/jupyter-globus", H.UserGlobusHandler),
            ("/user/slurm-usage", H.SlurmUsageHandler), ("/user/job", J.UserJobsHandler),
            ("/job", J.JobCreateHandler), (f"/job/{jid}", J.JobHandler),
            (f"/job/{jid}/submit", J.JobSubmitHandler),
            (f"/job/{jid}/events", J.JobEventsHandler),
            (f"/job/{jid}/logs", J.JobLogsHandler),
            (f"/job/{jid}/result-folder-content", J.ResultFolderContentHandler),
            (f"/job/{jid}/cancel", J.JobCancelHandler),
            (f"/statistic/job/{jid}", J.StatisticHandler),
            ("/folder", J.FoldersHandler), (f"/folder/{fid}", J.FolderHandler),
            (f"/folder/{fid}/download/globus-(?:init|status)", J.GlobusHandler),
        ]
        return [(f"{p}{path}/?", handler, {"compat": self}) for path, handler in table]
