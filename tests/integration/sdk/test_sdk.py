"""The Python SDK (hpcbridge.Client / Job) as a notebook uses it, against the real middleware
and maintainer, JupyterHub tokens and Slurm over ssh.

The environment is what a hub-spawned server gives its kernels: HPCBRIDGE_URL (set by the
hub's Spawner.environment) and JUPYTERHUB_API_TOKEN (the user's token)."""
from __future__ import annotations

import json
import threading
import time

import pytest
from services import Services, remove_remote, slurm_hpc, wait_for_sshd

from hpcbridge import Client
from hpcbridge.errors import (
    AuthError,
    Conflict,
    NotFound,
    Unavailable,
    ValidationError,
)

pytestmark = [pytest.mark.stack, pytest.mark.slow]

WAIT = 240  # generous: other tests share Slurm and restart sshd now and then


@pytest.fixture
def alice_env(slurm_middleware, hub, monkeypatch):
    """A kernel of alice's hub-spawned server: URL from the hub, token = alice's."""
    monkeypatch.delenv("HPCBRIDGE_TOKEN", raising=False)
    monkeypatch.setenv("HPCBRIDGE_URL", slurm_middleware.url)
    monkeypatch.setenv("JUPYTERHUB_API_TOKEN", hub.tokens["alice"])


def events_of(job) -> str:
    return "; ".join(f"{e.type}: {e.message}" for e in job.events())


def test_hello_with_an_uploaded_folder_end_to_end(alice_env, tmp_path):
    data = tmp_path / "input"
    (data / "sub").mkdir(parents=True)
    (data / "cities.csv").write_text("name,pop\nParis,2100000\n")
    (data / "sub" / "notes.txt").write_text("nested\n")

    client = Client()
    assert client.me().name == "alice"
    assert "slurm" in {h.id for h in client.hpcs()}
    assert {"hello", "primes"} <= {a.id for a in client.apps()}

    job = client.submit("hello", hpc="slurm", upload=str(data),
                        params={"name": "Ada", "lines": 3, "delay": 0.1})
    assert (job.user, job.app, job.hpc, job.status) == ("alice", "hello", "slurm", "queued")
    assert job.upload and job.params["name"] == "Ada"

    job.wait(progress=False, timeout=WAIT)
    assert job.status == "succeeded", events_of(job)
    assert job.exit_code == 0 and job.scheduler_id and job.finished_at
    types = [e.type for e in job.events()]
    assert {"submitted", "running", "succeeded"} <= set(types), types

    assert job.logs() == "".join(f"[{i}/3] Hello, Ada!\n" for i in (1, 2, 3))
    assert job.logs("stderr") == "done\n"
    assert job.logs(offset=len("[1/3] Hello, Ada!\n")).startswith("[2/3]")

    paths = {r.path for r in job.results()}
    assert {"result/greeting.txt", "result/data_listing.txt"} <= paths

    dest = job.download(str(tmp_path / "out"))
    assert (tmp_path / "out" / "result" / "greeting.txt").read_text() == "Hello, Ada!\n"
    listing = (tmp_path / "out" / "result" / "data_listing.txt").read_text()
    # the folder arrived whole on the login node, nested file included
    assert "cities.csv" in listing and "sub" in listing and "notes.txt" in listing, listing
    assert dest == str(tmp_path / "out")
    # the job is alice's and shows in her list
    assert job.id in {j.id for j in client.jobs()}
    assert job.id in {j.id for j in client.jobs(status="succeeded", app="hello")}


def test_primes_summary_and_default_download_folder(alice_env, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    client = Client()
    job = client.submit("primes", hpc="slurm", params={"limit": 100000, "method": "sieve"},
                        resources={"cpus": 1, "time": 2})
    job.wait(timeout=WAIT)  # with its progress bar (tqdm, on stderr outside a notebook)
    assert job.status == "succeeded", events_of(job)
    assert "succeeded" in capsys.readouterr().err
    assert "9592 primes below 100000" in job.logs()
    job.download()
    summary = json.loads((tmp_path / "hpcbridge-results" / job.id / "result" /
                          "summary.json").read_text())
    assert summary["count"] == 9592 and summary["largest"] == 99991
    assert summary["limit"] == 100000 and summary["method"] == "sieve"
    assert "index,prime" in (tmp_path / "hpcbridge-results" / job.id / "result" /
                             "primes.csv").read_text()
    assert job.resources["cpus"] == 1 and job.resources["time"] == 2
    assert "<table" in job._repr_html_() and job.id in job._repr_html_()


def test_cancel_a_running_job_and_follow_its_logs(alice_env):
    client = Client()
    job = client.submit("hello", hpc="slurm", params={"name": "Long", "lines": 100,
                                                      "delay": 1})
    first = next(job.follow_logs(poll=0.3))  # blocks until Slurm runs it and it prints
    assert first.startswith("[1/100] Hello, Long!")
    assert job.refresh().status in ("running", "finishing")
    job.cancel()
    assert job.cancel_requested
    job.wait(progress=False, timeout=WAIT)
    assert job.status == "cancelled", events_of(job)
    with pytest.raises(Conflict):
        job.cancel()
    # the log does not go on after the cancel: fewer than 100 lines
    assert 1 <= job.logs().count("Hello, Long!") < 100


def test_validation_errors_carry_field_paths(alice_env):
    client = Client()
    before = {j.id for j in client.jobs(limit=1000)}
    with pytest.raises(ValidationError) as info:
        client.submit("hello", hpc="slurm", params={"name": "x", "lines": 0})
    assert info.value.status == 422
    assert info.value.fields == {"params.lines": "must be at least 1"}
    assert "params.lines" in info.value.message

    with pytest.raises(ValidationError) as info:
        client.submit("hello", hpc="slurm", params={"name": "x", "lines": "many",
                                                    "colour": "red"})
    assert info.value.fields == {"params.lines": "must be an integer",
                                 "params.colour": "unknown parameter"}
    with pytest.raises(ValidationError) as info:
        client.submit("hello", hpc="slurm", params={"name": "x"}, resources={"cpus": 64})
    assert set(info.value.fields) == {"resources.cpus"}, info.value.fields

    with pytest.raises(ValidationError) as info:
        client.submit("no-such-app")
    assert info.value.fields == {"app": "unknown app"}
    with pytest.raises(ValidationError) as info:
        client.submit("hello", hpc="nowhere")
    assert "hpc" in info.value.fields
    assert {j.id for j in client.jobs(limit=1000)} == before  # nothing was created


def test_other_users_and_bad_tokens(alice_env, hub):
    alice = Client()
    job = alice.submit("hello", hpc="slurm", params={"name": "private", "lines": 1,
                                                     "delay": 0})
    bob = Client(token=hub.tokens["bob"])
    assert bob.me().name == "bob"
    with pytest.raises(NotFound):
        bob.job(job.id)
    assert job.id not in {j.id for j in bob.jobs(limit=1000)}
    with pytest.raises(NotFound):
        bob._json("GET", f"jobs/{job.id}/logs")
    with pytest.raises(AuthError) as info:
        Client(token="not-a-token").me()
    assert info.value.status == 401
    with pytest.raises(NotFound):
        alice.job("0" * 32)
    job.wait(progress=False, timeout=WAIT)
    assert job.status == "succeeded", events_of(job)


def test_middleware_that_went_down_is_unavailable(stack, hub, tmp_path):
    services = Services(str(tmp_path), stack, auth="hub").start(maintainer=False)
    try:
        client = Client(services.url, hub.tokens["alice"])
        assert client.me().name == "alice"
    finally:
        services.stop()
    with pytest.raises(Unavailable) as info:
        client.me()
    assert services.url in info.value.message
    with pytest.raises(Unavailable):
        client.submit("hello", params={"name": "x"})


def test_wait_listens_to_the_event_stream_instead_of_polling(stack, hub, tmp_path, request):
    wait_for_sshd(stack)
    request.getfixturevalue("ssh_target")
    services = Services(str(tmp_path), stack, auth="hub",
                        extra_config="c.HPCBridgeServer.log_level = 'INFO'")
    services.hpcs = [slurm_hpc(stack, services.run_id)]
    services.start()
    try:
        client = Client(services.url, hub.tokens["alice"])
        job = client.submit("hello", hpc="slurm", params={"name": "Quiet", "lines": 4,
                                                          "delay": 1})
        t0 = time.monotonic()
        job.wait(progress=False, timeout=WAIT, poll=0.2)
        took = time.monotonic() - t0
        assert job.status == "succeeded", events_of(job)
        asks = services.log("server").count(f"GET /api/v1/jobs/{job.id} ")
        deadline = time.monotonic() + 10  # a stream is logged once the middleware ends it
        while "GET /api/v1/events/stream" not in (log := services.log("server")):
            assert time.monotonic() < deadline, log
            time.sleep(0.3)
        # polling every 0.2 s for the >= 4 s the job runs would ask 20 times
        assert took >= 4 and asks <= 4, (took, asks, log)
        # a timeout still works while listening
        slow = client.submit("hello", hpc="slurm", params={"name": "Slow", "lines": 30,
                                                           "delay": 1})
        t0 = time.monotonic()
        with pytest.raises(TimeoutError):
            slow.wait(progress=False, timeout=3)
        assert 2.5 < time.monotonic() - t0 < 10
        slow.cancel()
        slow.wait(progress=False, timeout=WAIT)
        assert slow.status == "cancelled"
    finally:
        services.stop()
        remove_remote(stack, f"hpcbridge-it/{services.run_id}")


def test_wait_goes_on_through_a_middleware_restart(stack, tmp_path):
    """The stream is cut when the middleware stops; Job.wait opens it again (resuming
    after the last event it read) once the middleware is back, and sees the job end.
    submit() sends an Idempotency-Key, kept with the job."""
    from services import local_hpc

    from hpcbridge.server.store import Store
    services = Services(str(tmp_path), stack, auth="static",
                        static_tokens={"tok-alice": "alice"},
                        hpcs=[local_hpc(str(tmp_path / "data"))],
                        extra_config="c.HPCBridgeServer.log_level = 'INFO'").start()
    try:
        client = Client(services.url, "tok-alice")
        job = client.submit("hello", hpc="local", params={"name": "Cut", "lines": 8,
                                                          "delay": 0.5})
        store = Store(services.db_url, create=False)
        assert store.get_job(job.id).idempotency_key
        store.close()
        outcome: dict = {}

        def wait():
            try:
                outcome["job"] = job.wait(progress=False, timeout=WAIT)
            except Exception as exc:  # shown by the assertion below
                outcome["error"] = exc

        waiter = threading.Thread(target=wait, daemon=True)
        waiter.start()
        time.sleep(1.5)
        services.stop("server")  # SIGTERM: the stream ends, then nothing answers
        time.sleep(2)
        services._spawn("server", "server")
        services.wait_health()
        waiter.join(WAIT)
        assert "error" not in outcome, outcome
        assert job.status == "succeeded", events_of(job)
        # the stream that was open when the middleware stopped was ended, not dropped
        assert "200 GET /api/v1/events/stream" in services.log("server")
    finally:
        services.stop()
