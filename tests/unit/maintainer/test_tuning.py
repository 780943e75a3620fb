"""The maintainer's tuning (maintainer/config.py): documented traitlets with the defaults
the code always had, read from the site's config file, and `hpcbridge maintainer
--generate-config` writing every configurable class."""
from __future__ import annotations

import time

import pytest
from maintainer_helpers import site_config
from traitlets import TraitType

from hpcbridge.config import Site
from hpcbridge.maintainer.app import MaintainerApp
from hpcbridge.maintainer.config import Maintainer
from hpcbridge.maintainer.throttle import Throttle

DEFAULTS = {"lease_poll_intervals": 3.0, "lease_min_seconds": 15.0, "poll_jitter": 0.2,
            "resend_seconds": 30.0, "resend_memory": 100000,
            "cancel_resend_seconds": 60.0, "admission_lock_seconds": 30.0,
            "reconcile_every_cycles": 10, "stale_task_timeouts": 4.0,
            "heartbeats_per_timeout": 6, "quiet_log_after_seconds": 60.0,
            "quiet_log_every_seconds": 30.0, "final_log_rounds": 1000, "stats_keep": 1000,
            # issue 19: a deadline per cycle, lookups of jobs the scheduler lost, probes
            "cycle_deadline_seconds": 180.0, "idle_probe_seconds": 60.0,
            "lost_after_seconds": 120.0, "lookups_per_cycle": 20,
            # issue 24: the batched submit path
            "submit_batch_size": 200, "staging_concurrency": 64}


def test_defaults_are_unchanged_and_every_setting_is_documented():
    tuning = Maintainer()
    traits = Maintainer.class_traits(config=True)
    assert set(traits) == set(DEFAULTS)
    for name, value in DEFAULTS.items():
        assert getattr(tuning, name) == value, name
        trait: TraitType = traits[name]
        assert len(trait.help.split()) >= 8, f"{name} needs a help string that explains it"


def test_settings_come_from_the_site_config(tmp_path):
    c = site_config(tmp_path, cancel_resend_seconds=5.0, stats_keep=7)
    site = Site(config=c)
    tuning = Maintainer(config=site.config)  # as Runtime reads it
    assert (tuning.cancel_resend_seconds, tuning.stats_keep) == (5.0, 7)
    assert tuning.resend_seconds == 30.0


def test_generate_config_writes_every_class(tmp_path):
    path = tmp_path / "hpcbridge_config.py"
    app = MaintainerApp()
    app.initialize(["--generate-config", "--config", str(path)])
    app.start()
    text = path.read_text()
    for cls in ("Site", "Maintainer", "MaintainerApp"):
        assert f"# c.{cls}." in text, cls
    for name, value in DEFAULTS.items():
        assert f"# c.Maintainer.{name} = {value!r}" in text
    assert "# c.Site.worker_timeout = 30.0" in text
    # a site's config is never overwritten
    app = MaintainerApp()
    app.initialize(["--generate-config", "--config", str(path)])
    with pytest.raises(SystemExit):
        app.start()
    assert path.read_text() == text


def test_the_config_file_is_read_by_the_app(tmp_path):
    path = tmp_path / "hpcbridge_config.py"
    path.write_text("c.Maintainer.resend_seconds = 12.5\nc.MaintainerApp.workers = 3\n")
    app = MaintainerApp()
    app.initialize(["--config", str(path)])
    assert app.workers == 3
    assert Maintainer(config=Site(config=app.config).config).resend_seconds == 12.5


def test_throttle_lets_a_key_out_once_per_interval():
    throttle = Throttle(every=0.2, memory=3)
    assert throttle.due("a") and not throttle.due("a")
    assert throttle.due("a", force=True)  # forced: goes out, and counts as sent
    assert throttle.due("b")
    throttle.forget("b")
    assert throttle.due("b")
    time.sleep(0.25)
    assert throttle.due("a")


def test_throttle_forgets_only_keys_past_their_interval_beyond_its_memory():
    throttle = Throttle(every=0.1, memory=2)
    assert throttle.due("a") and throttle.due("b")
    time.sleep(0.15)
    assert throttle.due("c") and throttle.due("d")  # over memory: a and b are forgotten
    assert set(throttle._sent) == {"c", "d"}
    assert not throttle.due("c")  # recent keys are kept whatever the memory
