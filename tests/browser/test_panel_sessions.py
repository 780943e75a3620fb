"""Interactive sessions from the panel (issue #22), in chromium, against the real stack.

alice starts the bundled JupyterLab service app on Slurm from the panel's Sessions view;
it runs on the compute node and is opened (a new tab) through two proxies: her JupyterLab's
server extension, then the middleware's SSH-forwarded session proxy. A notebook cell runs
there (the kernel's WebSocket goes through both proxies) and its output shows. bob, through
his own JupyterLab, gets 404 for her session's URL. Screenshots into docs/screenshots/.

JupyterLab on the HPC side: the stack's login node has no `jupyter` for hpcuser, so this
module installs one in hpcuser's home once (as a site would; ~45 s, then reused) and points
the app at it with the HPC's batch_prelude (HPCBRIDGE_JUPYTER).
"""
from __future__ import annotations

import shutil
import subprocess
import time

import httpx
import pytest
from conftest import dismiss_toasts, start_lab, stop_lab
from playwright.sync_api import expect
from services import Services, remove_remote, slurm_hpc

pytestmark = [pytest.mark.stack, pytest.mark.slow]

JUPYTER_VENV = ".hpcbridge-jupyter"  # under hpcuser's home
START_WAIT = 240_000  # ms: the job, then JupyterLab starting on the node
INSTALL = (f"test -x ~/{JUPYTER_VENV}/bin/jupyter || "
           f"(python3 -m venv ~/{JUPYTER_VENV} && "
           f"~/{JUPYTER_VENV}/bin/pip install -q 'jupyterlab>=4,<5' ipykernel)")


def on_login_node(stack: dict, command: str, timeout: float) -> subprocess.CompletedProcess:
    ssh = stack["ssh"]
    return subprocess.run(
        ["ssh", "-F", "/dev/null", "-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes",
         "-o", f"UserKnownHostsFile={ssh['known_hosts']}", "-o", "ConnectTimeout=10",
         "-i", ssh["key"], "-p", str(ssh["port"]), f"{ssh['user']}@{ssh['host']}", command],
        capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def hpc_jupyter(stack, ssh_target) -> str:
    """The path of hpcuser's `jupyter` on the login node (installed if missing)."""
    done = on_login_node(stack, INSTALL + f" && echo ~/{JUPYTER_VENV}/bin/jupyter", 600)
    if done.returncode != 0:
        pytest.fail(f"could not install JupyterLab for {stack['ssh']['user']}: {done.stderr}")
    return done.stdout.strip().splitlines()[-1]


@pytest.fixture(scope="module")
def bridge(stack, hub, redis_url, hpc_jupyter, tmp_path_factory):
    """The middleware + maintainer with Slurm, its jobs finding JupyterLab (overrides the
    conftest's bridge, so `lab` speaks to this one)."""
    services = Services(str(tmp_path_factory.mktemp("bridge")), stack, auth="hub")
    work = f"hpcbridge-it/{services.run_id}"
    services.hpcs = [slurm_hpc(stack, services.run_id, batch_prelude=[
        f"export HPCBRIDGE_JUPYTER={hpc_jupyter}",
        f"export HPCBRIDGE_NOTEBOOK_DIR=$HOME/{work}"])]
    services.start()
    yield services
    stop_sessions(services, hub.tokens["admin"], stack)
    services.stop()
    remove_remote(stack, work)


def stop_sessions(services: Services, admin_token: str, stack: dict) -> None:
    """Stop every session and wait for the maintainer to cancel their jobs (a session job
    left running holds the cluster's CPUs for its whole time limit); scancel what is
    still there after 60 s."""
    admin = services.client(admin_token)
    sessions = admin.get("sessions", params={"all": "1"}).json()
    for session in sessions:
        if session["status"] in ("starting", "running"):
            admin.delete(f"sessions/{session['id']}")
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and any(
            s["status"] != "stopped" for s in admin.get("sessions", params={"all": "1"}).json()):
        time.sleep(1)
    for session in sessions:
        on_login_node(stack, f"scancel --name=hpcbridge-session-{session['id']}", 30)


@pytest.fixture(scope="module")
def bob_lab(bridge, hub, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("bob-lab")
    lab = start_lab(tmp, bridge.url, hub.tokens["bob"])
    yield lab
    stop_lab(lab)
    shutil.rmtree(tmp, ignore_errors=True)


def run_cell(page, code: str, output: str) -> None:
    """Type `code` in the notebook's first cell once its kernel is connected and idle,
    run it, wait for `output`. A run pressed while the notebook's kernel session is still
    being made runs nowhere: then it is pressed again (Ctrl+Enter runs in place)."""
    cell = page.locator(".jp-Notebook .jp-Cell .jp-InputArea-editor .cm-content").first
    cell.wait_for(timeout=60_000)
    page.locator(".jp-StatusBar-Widget", has_text="| Idle").first.wait_for(timeout=90_000)
    cell.click()
    page.keyboard.type(code)
    page.keyboard.press("Control+Enter")
    result = page.locator(".jp-OutputArea-output").first
    for _ in range(4):
        try:
            expect(result).to_contain_text(output, timeout=20_000)
            return
        except AssertionError:
            cell.click()
            page.keyboard.press("Control+Enter")
    expect(result).to_contain_text(output, timeout=20_000)


def test_jupyterlab_session_from_the_panel(lab_page, lab, bob_lab, bridge, hub, shoot):
    page, t = lab_page, lab_page.get_by_test_id
    t("hpcbridge-nav-sessions").click()
    expect(t("hpcbridge-sessions")).to_be_visible()
    expect(t("hpcbridge-session-quota")).to_contain_text("used")
    t("hpcbridge-app-select").select_option("jupyterlab")
    expect(t("hpcbridge-hpc-select")).to_have_value("slurm")
    t("hpcbridge-resource-time").fill("20")
    t("hpcbridge-session-start").click()

    row = t("hpcbridge-session-row").first
    expect(row).to_have_attribute("data-status", "starting", timeout=30_000)
    expect(row.get_by_test_id("hpcbridge-session-open")).to_be_disabled()
    expect(row).to_have_attribute("data-status", "running", timeout=START_WAIT)
    expect(row.get_by_test_id("hpcbridge-session-left")).to_contain_text("left")
    session_id = row.get_attribute("data-session-id")
    info = httpx.get(f"{lab.url}/hpcbridge/api/sessions/{session_id}",
                     params={"token": lab.token}, timeout=30).json()
    assert info["url"] == f"/hpcbridge/api/sessions/{session_id}/proxy/", info
    shoot(page, "sessions-view.png")

    # Open: a new tab on the session's JupyterLab, through both proxies
    with page.context.expect_page() as opened:
        row.get_by_test_id("hpcbridge-session-open").click()
    inner = opened.value
    inner.set_viewport_size({"width": 1400, "height": 900})
    inner.wait_for_load_state("domcontentloaded")
    assert inner.url.startswith(lab.url + info["url"]), inner.url
    inner.locator(".jp-LauncherCard").first.wait_for(timeout=120_000)
    inner.locator(".jp-LauncherCard[data-category='Notebook']").first.click()
    run_cell(inner, "import socket; print(6 * 7, 'from', socket.gethostname())", "42 from")
    dismiss_toasts(inner, "Jupyter news")
    shoot(inner, "session-jupyterlab.png")
    assert not [e for e in page.errors if "hpcbridge" in e], page.errors

    # bob, through his own JupyterLab: alice's session does not exist for him
    r = httpx.get(bob_lab.url + info["url"], params={"token": bob_lab.token}, timeout=30)
    assert r.status_code == 404 and r.json()["error"] == "not_found", r.text
    bob_page = page.context.browser.new_page()
    try:
        answer = bob_page.goto(f"{bob_lab.url}{info['url']}lab?token={bob_lab.token}")
        assert answer.status == 404
    finally:
        bob_page.close()

    # Stop: the row says so, the service is gone
    inner.close()
    row.get_by_test_id("hpcbridge-session-stop").click()
    expect(row).to_have_attribute("data-status", "stopped", timeout=60_000)
    expect(row.get_by_test_id("hpcbridge-session-open")).to_be_disabled()
