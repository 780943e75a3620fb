"""Fixtures of the maintainer's end-to-end tests: the middleware and the maintainer pool as
processes (tests/services.py), either on the local handler with an embedded Redis
(`local_services`) or on the stack's Slurm, Redis and JupyterHub (`slurm_services`).

Other suites share the same Slurm: every test has its own work root and Redis prefix, and
only ever looks at (or cancels) Slurm jobs named after its own hpcbridge jobs."""
from __future__ import annotations

import pytest
from aiosmtpd.controller import Controller
from maintainer_support import Mailbox, cancel_leftovers
from services import Services, free_port, local_hpc, remove_remote, slurm_hpc, wait_for_sshd

TOKENS = {"t-alice": "alice", "t-bob": "bob", "t-admin": "admin"}


@pytest.fixture
def local_services(tmp_path):
    """A factory: Services with the local HPC and static tokens (TOKENS), stopped after."""
    started: list[Services] = []

    def make(capacity=4, workers=2, poll=0.3, maintainer=True, **kw) -> Services:
        svc = Services(str(tmp_path / f"s{len(started)}"), None, auth="static",
                       static_tokens=TOKENS, workers=workers, **kw)
        svc.hpcs = [local_hpc(svc.data_dir, capacity=capacity, poll_interval=poll)]
        started.append(svc)
        return svc.start(maintainer=maintainer)

    yield make
    for svc in started:
        svc.stop()


@pytest.fixture
def slurm_services(tmp_path, stack, redis_url, hub, request):
    """A factory: Services with a Slurm HPC of the stack, stopped and cleaned up after."""
    wait_for_sshd(stack)  # another suite restarts sshd now and then
    request.getfixturevalue("ssh_target")
    started: list[Services] = []

    def make(capacity=4, workers=2, maintainer=True, extra_hpcs=(), **hpc) -> Services:
        svc = Services(str(tmp_path / f"s{len(started)}"), stack, workers=workers, auth="hub")
        svc.hpcs = [slurm_hpc(stack, svc.run_id, capacity=capacity, **hpc), *extra_hpcs]
        started.append(svc)
        return svc.start(maintainer=maintainer)

    yield make
    for svc in started:
        try:
            cancel_leftovers(svc, stack)
        finally:
            svc.stop()
            remove_remote(stack, f"hpcbridge-it/{svc.run_id}")


@pytest.fixture
def mailbox():
    """A real SMTP server (aiosmtpd) on a free port, keeping every mail it accepts."""
    box = Mailbox()
    controller = Controller(box, hostname="127.0.0.1", port=free_port())
    controller.start()
    box.port = controller.port
    yield box
    controller.stop()
