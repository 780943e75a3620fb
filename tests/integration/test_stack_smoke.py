"""Smoke tests: the test stack is real (Slurm over ssh with accounting, Redis, JupyterHub
tokens, chromium). Each one needs only its own component; see tests/conftest.py."""
from __future__ import annotations

import asyncio
import http.server
import threading
import time
import uuid

import asyncssh
import httpx
import pytest
import redis

pytestmark = [pytest.mark.stack, pytest.mark.timeout(180)]

FINAL_STATES = ("COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "OUT_OF_MEMORY", "NODE_FAIL",
                "PREEMPTED", "BOOT_FAIL", "DEADLINE")


# --- Slurm through the ssh login node --------------------------------------------------------
async def sacct_state(conn: asyncssh.SSHClientConnection, job_id: str) -> tuple[str, str]:
    """(State, ExitCode) of a job from accounting; ("", "") while sacct does not know it."""
    r = await conn.run(f"sacct -X -n -P -j {job_id} --format=JobID,State,ExitCode", check=True)
    for line in r.stdout.splitlines():
        jid, state, exit_code = line.split("|")
        if jid == job_id:
            return state, exit_code
    return "", ""


async def test_sbatch_job_completes_in_sacct_and_writes_its_file(ssh_target, stack):
    run = uuid.uuid4().hex[:12]
    workdir = f"hpcbridge-smoke/{run}"  # relative to hpcuser's home
    script = (
        "#!/bin/bash\n"
        f"#SBATCH --job-name=smoke-{run}\n"
        f"#SBATCH --partition={stack['slurm']['partition']}\n"
        "#SBATCH --output=slurm-%j.out\n"
        f"echo 'hello from job' $SLURM_JOB_ID > result.txt\n"
    )
    async with asyncssh.connect(**ssh_target.connect_kwargs()) as conn:
        await conn.run(f"mkdir -p {workdir}", check=True)
        try:
            async with conn.start_sftp_client() as sftp:
                async with sftp.open(f"{workdir}/job.sh", "w") as f:
                    await f.write(script)
            r = await conn.run(f"cd {workdir} && sbatch --parsable job.sh", check=True)
            job_id = r.stdout.strip().split(";")[0]
            assert job_id.isdigit(), r.stdout

            # sacct lags slurmctld by seconds: a non-final answer only means "ask again"
            deadline = time.monotonic() + 90
            state = exit_code = ""
            while time.monotonic() < deadline:
                state, exit_code = await sacct_state(conn, job_id)
                if state.startswith(FINAL_STATES):
                    break
                await asyncio.sleep(0.5)
            assert state.startswith("COMPLETED"), f"job {job_id}: sacct says {state!r}"
            assert exit_code == "0:0"

            async with conn.start_sftp_client() as sftp:
                async with sftp.open(f"{workdir}/result.txt") as f:
                    content = await f.read()
            assert content == f"hello from job {job_id}\n"

            # The job ran as hpcuser. Until slurmdbd has the job's start record, sacct
            # answers with a placeholder (JobName "allocation", User root) whose State and
            # ExitCode may already be final: wait for the real record.
            deadline = time.monotonic() + 30
            while True:
                r = await conn.run(f"sacct -X -n -P -j {job_id} --format=JobName,User",
                                   check=True)
                name, user = r.stdout.strip().split("|")
                if name != "allocation" or time.monotonic() > deadline:
                    break
                await asyncio.sleep(0.5)
            assert (name, user) == (f"smoke-{run}", ssh_target.user)
        finally:
            await conn.run(f"rm -rf {workdir}")


async def test_login_node_host_key_is_checked(ssh_target, tmp_path):
    """A client that does not know the host key is refused: known_hosts really is checked."""
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    kwargs = ssh_target.connect_kwargs() | {"known_hosts": str(empty)}
    with pytest.raises(asyncssh.HostKeyNotVerifiable):
        async with asyncssh.connect(**kwargs):
            pass


def test_slurm_node_and_partition(stack, ssh_target):
    async def sinfo():
        async with asyncssh.connect(**ssh_target.connect_kwargs()) as conn:
            r = await conn.run("sinfo -h -o '%P %c %T'", check=True)
            return r.stdout.split()

    partition, cpus, state = asyncio.run(sinfo())
    assert partition == stack["slurm"]["partition"] + "*"  # the default partition
    assert int(cpus) == stack["slurm"]["cpus"]
    assert state in {"idle", "mixed", "allocated", "completing"}


# --- Redis -----------------------------------------------------------------------------------
def test_redis_round_trip(redis_url):
    assert redis_url.startswith("redis://127.0.0.1:6390/")
    client = redis.Redis.from_url(redis_url)
    key = f"hpcbridge-smoke:{uuid.uuid4().hex}"
    try:
        assert client.set(key, "value", ex=60)
        assert client.get(key) == b"value"
        assert client.incr(f"{key}:n") == 1
    finally:
        client.delete(key, f"{key}:n")
        client.close()


# --- JupyterHub ------------------------------------------------------------------------------
@pytest.mark.parametrize("user", ["alice", "bob"])
def test_hub_token_resolves_to_its_user(hub, user):
    r = httpx.get(f"{hub.api_url}/user", headers=hub.headers(user), timeout=10)
    assert r.status_code == 200, r.text
    model = r.json()
    assert model["name"] == user
    assert model["admin"] is False
    # the hub gives every user access to the hpcbridge service
    assert f"access:services!service={hub.service_name}" in model["scopes"]


def test_hub_admin_token_is_admin(hub):
    r = httpx.get(f"{hub.api_url}/user", headers=hub.headers("admin"), timeout=10)
    assert r.status_code == 200, r.text
    assert r.json()["name"] == "admin"
    assert r.json()["admin"] is True


def test_hub_refuses_a_bogus_token(hub):
    r = httpx.get(f"{hub.api_url}/user", headers={"Authorization": "token not-a-token"},
                  timeout=10)
    assert r.status_code == 403


def test_hub_service_token_reads_users(hub):
    r = httpx.get(f"{hub.api_url}/user", headers=hub.headers("service"), timeout=10)
    assert r.status_code == 200, r.text
    assert r.json()["kind"] == "service"
    assert r.json()["name"] == hub.service_name
    r = httpx.get(f"{hub.api_url}/users/alice", headers=hub.headers("service"), timeout=10)
    assert r.status_code == 200, r.text
    # ...while a user cannot read another user
    r = httpx.get(f"{hub.api_url}/users/alice", headers=hub.headers("bob"), timeout=10)
    assert r.status_code in (403, 404)


# --- chromium --------------------------------------------------------------------------------
PAGE = b"""<!doctype html><html><head><title>smoke</title></head>
<body style="background:#1e6fd9;color:white;font:32px sans-serif">
<h1 id="hello">Hello from the test stack</h1></body></html>"""


@pytest.fixture
def local_page():
    """A tiny HTTP server on a free loopback port serving PAGE at /."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 (http.server's name)
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(PAGE)))
            self.end_headers()
            self.wfile.write(PAGE)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()


def test_chromium_renders_a_local_page(chromium, local_page):
    page = chromium.new_page(viewport={"width": 640, "height": 360})
    page.goto(local_page)
    assert page.title() == "smoke"
    assert page.locator("#hello").inner_text() == "Hello from the test stack"
    png = page.screenshot()
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    assert len(png) > 1000
    # the stylesheet was applied (the screenshot above is of a styled page)
    color = page.evaluate("getComputedStyle(document.body).backgroundColor")
    assert color == "rgb(30, 111, 217)"


async def test_async_chromium_renders_content(async_chromium):
    page = await async_chromium.new_page()
    await page.set_content("<p id='x'>async ok</p>")
    assert await page.locator("#x").inner_text() == "async ok"
    png = await page.screenshot()
    assert png.startswith(b"\x89PNG") and len(png) > 500
