"""The worker's Runtime: it drives each HPC with the handler the site's config names, the
built-ins or one registered in hpcbridge_config.py alone (Site.scheduler_handlers), and
reads its tuning from the same config."""
from __future__ import annotations

from maintainer_helpers import site_config

from hpcbridge.config import Site
from hpcbridge.connectors.handlers import LocalHandler
from hpcbridge.maintainer.runtime import Runtime


class TinyHandler(LocalHandler):
    """A site's own scheduler handler (here: the local one under another name)."""


def test_a_handler_registered_in_the_config_drives_its_hpc(tmp_path):
    c = site_config(tmp_path, resend_seconds=3.0)
    c.Site.scheduler_handlers = {"tiny": f"{__name__}.TinyHandler"}
    c.Site.hpcs = [*c.Site.hpcs, {"id": "mine", "scheduler": "tiny", "capacity": 1,
                                  "work_root": str(tmp_path / "tiny")}]
    rt = Runtime(Site(config=c), worker_id="w")
    try:
        assert type(rt.handlers["mine"]) is TinyHandler
        assert type(rt.handlers["local"]) is LocalHandler
        assert rt.tuning.resend_seconds == 3.0
    finally:
        rt.close()
