"""The scale-out site (issue 21): two middlewares, three maintainers, PostgreSQL, Redis,
one shared artifact folder, all on the real stack (make stack)."""
from __future__ import annotations

import pytest


def pytest_terminal_summary(terminalreporter):
    from scaleout_support import SUMMARIES

    for line in SUMMARIES:
        terminalreporter.write_line(line)


@pytest.fixture
def site(stack, hub, redis_url, pg_url, tmp_path, request):
    from scaleout_support import ScaleOutSite
    from services import remove_remote, slurm_hpc, wait_for_sshd

    wait_for_sshd(stack)
    request.getfixturevalue("ssh_target")
    svc = ScaleOutSite(str(tmp_path), stack, auth="hub", pg_url=pg_url)
    svc.hpcs = [slurm_hpc(stack, svc.run_id)]
    try:
        yield svc.start_site(hub.tokens["admin"])
    finally:
        svc.stop()  # scancels what still runs under this run's folder, then every process
        remove_remote(stack, f"hpcbridge-it/{svc.run_id}")
