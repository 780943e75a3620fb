"""Fixtures of the browser tests: the real hpcbridge services, a standalone JupyterLab that
speaks for alice, and a chromium page on it with the HPC Jobs panel open.

    bridge    Services (middleware + maintainer, auth by the stack's JupyterHub) with the
              stack's Slurm as HPC "slurm" and this machine as "local" (module scope)
    lab       Lab: a `jupyter-lab` whose server extension forwards to `bridge` with alice's
              hub token; its root dir holds a small data folder `mydata` (module scope)
    lab_page  a playwright Page (1400x900) on that JupyterLab, ready, with the news toast
              gone, the left sidebar widened and the HPC Jobs panel shown
    shoot     shoot(page, "name.png"): a screenshot into docs/screenshots/, toasts closed
"""
from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from services import Services, free_port, local_hpc, remove_remote, slurm_hpc

REPO = Path(__file__).resolve().parents[2]
VENV_BIN = REPO / ".venv" / "bin"
SHOTS = REPO / "docs" / "screenshots"
SIDEBAR_WIDTH = 470  # px: wide enough for the form's hints and the log lines


@pytest.fixture(scope="module")
def bridge(stack, hub, ssh_target, redis_url, tmp_path_factory):
    services = Services(str(tmp_path_factory.mktemp("bridge")), stack, auth="hub")
    services.hpcs = [slurm_hpc(stack, services.run_id), local_hpc(services.data_dir)]
    services.start()
    yield services
    services.stop()
    remove_remote(stack, f"hpcbridge-it/{services.run_id}")


@dataclass
class Lab:
    url: str
    token: str
    root: Path
    proc: subprocess.Popen
    log_path: Path

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-5000:]
        except FileNotFoundError:
            return ""


def start_lab(tmp: Path, middleware_url: str, token: str) -> Lab:
    """A standalone JupyterLab with private settings, workspaces and runtime dirs."""
    root = tmp / "home"
    (root / "mydata" / "sub").mkdir(parents=True)
    (root / "mydata" / "cities.csv").write_text("name,pop\nParis,2100000\nLyon,520000\n")
    (root / "mydata" / "sub" / "notes.txt").write_text("nested\n")
    settings = tmp / "lab-settings"
    notification = settings / "@jupyterlab" / "apputils-extension"
    notification.mkdir(parents=True)
    # no "Would you like to get notified about official Jupyter news?" toast, no update check
    (notification / "notification.jupyterlab-settings").write_text(
        '{"fetchNews": "false", "checkForUpdates": false}')
    env = {k: v for k, v in os.environ.items() if not k.startswith(("JUPYTER", "HPCBRIDGE"))}
    env.update(HPCBRIDGE_URL=middleware_url, HPCBRIDGE_TOKEN=token,
               JUPYTERLAB_SETTINGS_DIR=str(settings),
               JUPYTERLAB_WORKSPACES_DIR=str(tmp / "lab-workspaces"),
               JUPYTER_RUNTIME_DIR=str(tmp / "runtime"))
    port, lab_token = free_port(), secrets.token_hex(16)
    log_path = tmp / "jupyter-lab.log"
    proc = subprocess.Popen(
        [str(VENV_BIN / "jupyter-lab"), "--no-browser", "--allow-root", f"--port={port}",
         "--ip=127.0.0.1", f"--IdentityProvider.token={lab_token}",
         f"--ServerApp.root_dir={root}", "--ServerApp.port_retries=0"],
        cwd=tmp, env=env, stdout=open(log_path, "ab"), stderr=subprocess.STDOUT,
        start_new_session=True)
    lab = Lab(f"http://127.0.0.1:{port}", lab_token, root, proc, log_path)
    deadline = time.monotonic() + 90
    while True:
        if proc.poll() is not None:
            raise RuntimeError("jupyter-lab exited:\n" + lab.log())
        try:
            r = httpx.get(f"{lab.url}/api/status", params={"token": lab_token}, timeout=2)
            if r.status_code == 200:
                return lab
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            stop_lab(lab)
            raise RuntimeError("jupyter-lab did not answer in 90 s:\n" + lab.log())
        time.sleep(0.3)


def stop_lab(lab: Lab) -> None:
    import signal

    if lab.proc.poll() is None:
        os.killpg(lab.proc.pid, signal.SIGTERM)
        try:
            lab.proc.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(lab.proc.pid, signal.SIGKILL)
            lab.proc.wait()


@pytest.fixture(scope="module")
def lab(bridge, hub, tmp_path_factory):
    """JupyterLab speaking for alice: HPCBRIDGE_TOKEN is her real hub token."""
    tmp = tmp_path_factory.mktemp("lab")
    lab = start_lab(tmp, bridge.url, hub.tokens["alice"])
    yield lab
    stop_lab(lab)
    shutil.rmtree(tmp, ignore_errors=True)


def dismiss_toasts(page, text: str | None = None) -> None:
    """Close JupyterLab toasts (all, or those containing `text`), e.g. the news question."""
    toasts = page.locator(".Toastify__toast")
    if text:
        toasts = toasts.filter(has_text=text)
    for _ in range(10):
        if toasts.count() == 0:
            return
        try:
            toasts.first.locator(".Toastify__close-button, button[title='Dismiss notification'],"
                                 " .jp-toast-dismiss").first.click(timeout=2000)
        except Exception:  # noqa: BLE001 — a toast may close itself meanwhile
            pass
        page.wait_for_timeout(300)


def widen_left_sidebar(page, width: int = SIDEBAR_WIDTH) -> None:
    """Drag the handle between the left sidebar and the main area to `width` px."""
    handle = page.locator("#jp-main-split-panel > .lm-SplitPanel-handle").first
    box = handle.bounding_box()
    if box is None:
        return
    x, y = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    page.mouse.move(x, y)
    page.mouse.down()
    page.mouse.move(x + 40, y, steps=4)
    panel = page.locator("#hpcbridge-panel")
    left = panel.bounding_box()["x"] if panel.bounding_box() else 33
    page.mouse.move(left + width, y, steps=8)
    page.mouse.up()


@pytest.fixture
def lab_page(chromium, lab):
    """A chromium page on the JupyterLab, with the HPC Jobs panel open and wide."""
    context = chromium.new_context(viewport={"width": 1400, "height": 900})
    context.set_default_timeout(30_000)
    page = context.new_page()
    page.errors = []  # uncaught exceptions of the page, for the test's own checks
    page.on("pageerror", lambda e: page.errors.append(str(e)))
    page.goto(f"{lab.url}/lab?token={lab.token}&reset", wait_until="domcontentloaded")
    page.locator(".jp-LauncherCard").first.wait_for(timeout=90_000)
    tab = page.locator('[data-id="hpcbridge-panel"]')
    tab.wait_for(timeout=30_000)
    dismiss_toasts(page, "Jupyter news")
    tab.click()
    page.locator("#hpcbridge-panel").wait_for(state="visible")
    widen_left_sidebar(page)
    try:
        yield page
    finally:
        context.close()


@pytest.fixture
def shoot():
    """shoot(page, name): the whole window into docs/screenshots/<name>, no toasts in front."""
    def shoot(page, name: str) -> Path:
        dismiss_toasts(page)
        page.mouse.move(700, 885)  # no hover effect or tooltip on the panel
        page.wait_for_timeout(300)
        SHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SHOTS / name))
        return SHOTS / name
    return shoot
