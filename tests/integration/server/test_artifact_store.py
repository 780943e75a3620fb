"""Artifacts through one store on the real stack (hpcbridge/artifacts.py, issue 21).

A middleware and a maintainer as if on two hosts: each its own data dir and config, one
PostgreSQL database, the stack's Redis, and one shared artifact folder apart from both data
dirs. A job with an upload runs on Slurm; the upload, the app snapshot and the results are
in the shared folder only, and the results download. Then a middleware and a maintainer
whose artifact folder is another one refuse to start, saying which path on which host."""
from __future__ import annotations

import io
import json
import os
import socket
import subprocess
import zipfile

import pytest
import redis
from services import Services, remove_remote, slurm_hpc, wait_for_sshd

from hpcbridge.artifacts import MARKER, site_key

pytestmark = [pytest.mark.stack, pytest.mark.slow]

TOKENS = {"tok-alice": "alice"}
EXIT_WRONG_STORE = 78  # maintainer/worker.py


def kinds(folder: str) -> dict[str, list[str]]:
    """What each artifact kind holds in a folder (temporary names left out)."""
    return {k: sorted(n for n in os.listdir(os.path.join(folder, k)) if not n.startswith("."))
            for k in ("uploads", "apps", "results") if os.path.isdir(os.path.join(folder, k))}


@pytest.fixture
def two_hosts(tmp_path, stack, pg_url, request):
    """A middleware ("host A") and a maintainer ("host B"): own data dirs, one database,
    one Redis prefix, the artifact folder `shared` mounted by both."""
    wait_for_sshd(stack)
    request.getfixturevalue("ssh_target")
    shared = str(tmp_path / "shared")
    config = f"c.SharedFolderArtifacts.root = {shared!r}\n"
    a = Services(str(tmp_path / "a"), stack, auth="static", static_tokens=TOKENS,
                 db_url=pg_url, extra_config=config)
    a.hpcs = [slurm_hpc(stack, a.run_id, poll_interval=0.5)]
    b = Services(str(tmp_path / "b"), stack, auth="static", static_tokens=TOKENS,
                 db_url=pg_url, run_id=a.run_id, hpcs=a.hpcs, extra_config=config)
    try:
        a.start(maintainer=False)
        b.write_config()
        b.start_maintainer(workers=2)
        yield a, b, shared
    finally:
        b.stop()
        a.stop()
        remove_remote(stack, f"hpcbridge-it/{a.run_id}")


def test_a_job_with_an_upload_runs_from_the_shared_store_and_its_results_download(two_hosts):
    a, b, shared = two_hosts
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        zf.writestr("input/a.txt", "alpha\n")
    with a.client("tok-alice") as alice:
        r = alice.post("uploads?name=data.zip", content=buffer.getvalue())
        assert r.status_code == 201, r.text
        upload = r.json()["id"]
        r = alice.post("jobs", json={"app": "hello", "hpc": "slurm", "upload": upload,
                                     "params": {"name": "shared", "lines": 1, "delay": 0}})
        assert r.status_code == 201, r.text
        job = r.json()["id"]
        done = b.wait_job(alice, job, timeout=120)
        assert done["status"] == "succeeded", (done, b.log("maintainer"))
        events = [e["message"] for e in alice.get(f"jobs/{job}/events").json()]
        assert any(m.startswith("submitted to slurm as ") for m in events), events
        listing = {e["path"] for e in alice.get(f"jobs/{job}/results").json()}
        assert "result/data_listing.txt" in listing, listing
        assert "a.txt" in alice.get(f"jobs/{job}/results/result/data_listing.txt").text
        greeting = alice.get(f"jobs/{job}/results/result/greeting.txt")
        assert greeting.status_code == 200 and greeting.text == "Hello, shared!\n"
        folder = alice.get(f"jobs/{job}/results/")
        assert folder.headers["Content-Type"] == "application/zip"
        with zipfile.ZipFile(io.BytesIO(folder.content)) as zf:
            assert "result/greeting.txt" in zf.namelist()
    held = kinds(shared)
    assert upload in held["uploads"] and job in held["results"]
    assert {"hello", "primes"} <= set(held["apps"])
    for svc in (a, b):  # neither host's own data dir holds an artifact
        assert not any(kinds(svc.data_dir).values()), kinds(svc.data_dir)
    with open(os.path.join(shared, MARKER)) as f:
        marker = f.read().strip()
    recorded = redis.Redis.from_url(a.stack["redis_url"]).get(
        site_key(f"hpcbridge-test-{a.run_id}"))
    assert json.loads(recorded)["id"] == marker
    for svc, name in ((a, "server"), (b, "maintainer")):
        assert "Traceback" not in svc.log(name, None), svc.log(name)


def test_processes_on_another_artifact_folder_refuse_to_start_saying_where(two_hosts,
                                                                         tmp_path, pg_url):
    a, _b, shared = two_hosts
    key = site_key(f"hpcbridge-test-{a.run_id}")
    r = redis.Redis.from_url(a.stack["redis_url"])
    before = r.get(key)
    # "host C" forgot to mount the shared folder: its artifacts would be in its data dir
    c = Services(str(tmp_path / "c"), a.stack, auth="static", static_tokens=TOKENS,
                 db_url=pg_url, run_id=a.run_id, hpcs=a.hpcs)
    host = socket.gethostname()
    try:
        with pytest.raises(RuntimeError, match="middleware exited"):
            c.start(maintainer=False)
        assert c.procs["server"].wait(10) == 1
        said = c.log("server", None)
        assert f"the artifact store {c.data_dir} on host {host}" in said, said
        assert shared in said and "Traceback" not in said, said
        for workers in (1, 2):  # a single worker and the pool: neither starts anything
            proc = c.start_maintainer(workers=workers, name=f"maintainer{workers}")
            try:
                code = proc.wait(60)
            except subprocess.TimeoutExpired:
                pytest.fail(f"the maintainer ({workers} workers) did not refuse:\n"
                            + c.log(f"maintainer{workers}"))
            said = c.log(f"maintainer{workers}", None)
            assert code == EXIT_WRONG_STORE, said
            assert f"the artifact store {c.data_dir} on host {host}" in said, said
        assert not os.path.exists(os.path.join(c.data_dir, MARKER))
        assert not any(kinds(c.data_dir).values())  # nothing was written there
        assert r.get(key) == before  # the site's record stays
    finally:
        c.stop()
