"""A site adds a scheduler type by configuration: a handler class named in
hpcbridge_config.py (Site.scheduler_handlers) drives the HPCs whose `scheduler` names it."""
from __future__ import annotations

import pytest
from traitlets.config import Config

from hpcbridge.config import Site
from hpcbridge.connectors.handlers import (
    BUILTIN_HANDLERS,
    LocalHandler,
    SchedulerHandler,
    SlurmHandler,
    UnknownScheduler,
    create_handler,
)
from hpcbridge.connectors.spec import JobSpec
from hpcbridge.connectors.state import SUCCEEDED, UNKNOWN, JobState
from hpcbridge.connectors.transport import LocalTransport
from hpcbridge.maintainer.app import MaintainerApp


class TinyHandler(SchedulerHandler):
    """A site's own scheduler in a few lines: every job ends at once, successfully."""

    @classmethod
    def default_transport(cls, config):
        return LocalTransport(config.work_root)

    async def submit(self, spec: JobSpec) -> str:
        self.jobs = {**getattr(self, "jobs", {}), spec.name: str(len(getattr(self, "jobs", {})))}
        return self.jobs[spec.name]

    async def status_many(self, ids):
        known = set(getattr(self, "jobs", {}).values())
        return {i: JobState(i, SUCCEEDED if i in known else UNKNOWN) for i in ids}

    async def cancel(self, scheduler_id: str) -> None:
        pass

    async def find_by_name(self, name: str) -> str | None:
        return getattr(self, "jobs", {}).get(name)


def load_site(tmp_path, text: str) -> Site:
    """The Site a maintainer worker gets from hpcbridge_config.py (MaintainerApp, then
    run_worker's Site(config=...))."""
    path = tmp_path / "hpcbridge_config.py"
    path.write_text(text)
    app = MaintainerApp()
    app.initialize(["--config", str(path)])
    return Site(config=app.config)


HPCS = """
c.Site.data_dir = {data!r}
c.Site.hpcs = [
    {{"id": "cluster-a", "scheduler": "tiny", "work_root": {work!r}}},
    {{"id": "local", "scheduler": "local", "work_root": {work!r}}},
]
"""


@pytest.mark.parametrize("entry", [
    f'"{__name__}.TinyHandler"',  # an import string
    f'__import__("sys").modules["{__name__}"].TinyHandler',  # the class itself
])
async def test_a_handler_registered_in_the_config_file_drives_its_hpcs(tmp_path, entry):
    site = load_site(tmp_path, HPCS.format(data=str(tmp_path), work=str(tmp_path / "w")) +
                     f'c.Site.scheduler_handlers = {{"tiny": {entry}}}\n')
    hpcs = site.hpc_configs()
    registry = site.handler_registry()
    assert registry == {**BUILTIN_HANDLERS, "tiny": TinyHandler}

    handler = create_handler(hpcs["cluster-a"], registry=registry)
    assert type(handler) is TinyHandler and handler.config.id == "cluster-a"
    assert isinstance(handler.transport, LocalTransport)
    job = await handler.submit(JobSpec(name="hpcbridge-1", workdir="/w/1", command="true"))
    assert (await handler.status_many([job]))[job].status == SUCCEEDED
    # the built-ins are still there for the other HPCs
    assert type(create_handler(hpcs["local"], registry=registry)) is LocalHandler


def test_a_site_may_replace_a_builtin(tmp_path):
    site = load_site(tmp_path, f'c.Site.data_dir = "{tmp_path}"\n'
                     f'c.Site.scheduler_handlers = {{"local": "{__name__}.TinyHandler"}}\n')
    handler = create_handler(site.hpc_configs()["local"], registry=site.handler_registry())
    assert type(handler) is TinyHandler


def test_without_a_registry_only_the_builtins_are_known(tmp_path):
    assert sorted(BUILTIN_HANDLERS) == ["local", "slurm"]
    with pytest.raises(UnknownScheduler, match=r"'tiny'; known: local, slurm"):
        create_handler({"id": "a", "scheduler": "tiny"})
    slurm = create_handler({"id": "b", "scheduler": "slurm", "host": "h", "user": "u"})
    assert type(slurm) is SlurmHandler
    assert slurm.transport.connections_opened == 0  # nothing connects before it is used
    local = create_handler({"id": "c", "scheduler": "local", "work_root": str(tmp_path)})
    assert type(local) is LocalHandler and isinstance(local.transport, LocalTransport)


def test_an_unknown_scheduler_name_is_refused_when_the_config_is_read(tmp_path):
    site = load_site(tmp_path, HPCS.format(data=str(tmp_path), work=str(tmp_path / "w")) +
                     'c.Site.scheduler_handlers = {"pbs": "mysite.handlers.PBSHandler"}\n')
    with pytest.raises(UnknownScheduler, match=r"'tiny'; known: local, pbs, slurm"):
        site.hpc_configs()


@pytest.mark.parametrize(("entry", "message"), [
    ("no_such_module_here.Handler", "cannot import 'no_such_module_here.Handler'"),
    (f"{__name__}.NoSuchClass", "cannot import"),
    (f"{__name__}.load_site", "is not a subclass of"),
    (dict, "is not a subclass of"),
])
def test_a_bad_registration_fails_at_start_up_with_its_name(entry, message):
    site = Site(config=Config({"Site": {"scheduler_handlers": {"tiny": entry}}}))
    with pytest.raises(UnknownScheduler, match=f"scheduler handler 'tiny'.*{message}"):
        site.handler_registry()

