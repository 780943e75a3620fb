"""Notifications when a job ends, end to end: the real middleware and maintainer processes
(tests/services.py), a real SMTP server (aiosmtpd) and a real HTTP receiver (tornado), both
started by the test. The webhook and the mail arrive within seconds of the job's end, once
each, signed; a failing receiver gets the message again with back-off until it takes it;
bad notify values are refused at submit. Fixtures: conftest.py."""
from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import subprocess
import sys
import threading
import time
from datetime import datetime

import pytest
from maintainer_support import cancel_leftovers, event_types, token
from services import Services, free_port, remove_remote, slurm_hpc, wait_for_sshd
from tornado import web

from hpcbridge.client import Client

SECRET = "it-secret"


class Receiver:
    """An HTTP server on its own thread and loop that records every POST; the paths in
    `answers` are answered with those statuses first (then 200)."""

    def __init__(self, answers: dict[str, list[int]] | None = None):
        self.port, self.requests = free_port(), []
        self.answers = {k: list(v) for k, v in (answers or {}).items()}
        self.lock, self.ready = threading.Lock(), threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        assert self.ready.wait(10)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def _run(self):
        self.loop = asyncio.new_event_loop()
        receiver = self

        class Hook(web.RequestHandler):
            def post(self, path):
                with receiver.lock:
                    queued = receiver.answers.get("/" + path) or [200]
                    status = queued.pop(0) if len(queued) > 1 else queued[0]
                    receiver.requests.append({"path": "/" + path, "at": time.time(),
                                              "status": status, "body": self.request.body,
                                              "headers": dict(self.request.headers)})
                self.set_status(status)

        async def start():
            self.server = web.Application([(r"/(.*)", Hook)]).listen(self.port, "127.0.0.1")
        self.loop.run_until_complete(start())
        self.ready.set()
        self.loop.run_forever()

    def to(self, path: str) -> list[dict]:
        with self.lock:
            return [r for r in self.requests if r["path"] == path]

    def stop(self):
        self.loop.call_soon_threadsafe(self.server.stop)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


@pytest.fixture
def receiver():
    r = Receiver({"/flaky": [503, 503, 200], "/gone": [404]})
    yield r
    r.stop()


def notifier_config(mailbox, link_base="https://hub.example.org/services/hpcbridge") -> str:
    return "\n".join([
        f"c.Notifier.webhook_secret = {SECRET!r}",
        "c.Notifier.webhook_hosts = ['127.0.0.1']",
        "c.Notifier.smtp_host = '127.0.0.1'",
        f"c.Notifier.smtp_port = {mailbox.port}",
        "c.Notifier.mail_from = 'hpcbridge@example.org'",
        f"c.Notifier.link_base_url = {link_base!r}",
        "c.Notifier.poll_seconds = 0.2",
        "c.Notifier.retry_initial_seconds = 0.6",
        "c.Notifier.retry_jitter_seconds = 0.2",
        "c.Notifier.send_timeout = 5.0",
    ])


def verified(request: dict, tolerance: float = 300) -> dict:
    """The payload, if the signature is valid: what a receiver does (docs/notifications.md)."""
    headers = request["headers"]
    timestamp = headers["X-Hpcbridge-Timestamp"]
    assert abs(time.time() - int(timestamp)) < tolerance  # an old message sent again: refuse
    mac = hmac.new(SECRET.encode(), timestamp.encode() + b"." + request["body"], hashlib.sha256)
    assert hmac.compare_digest("sha256=" + mac.hexdigest(), headers["X-Hpcbridge-Signature"])
    return json.loads(request["body"])


def wait_for(what, timeout: float = 15.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if got := what():
            return got
        time.sleep(0.1)
    raise AssertionError(f"nothing after {timeout} s")


def finished(job: dict) -> float:
    return datetime.fromisoformat(job["finished_at"]).timestamp()


def submit(http, hpc: str, notify: dict) -> str:
    r = http.post("jobs", json={"app": "hello", "hpc": hpc, "params": {"lines": 1, "delay": 0},
                                "notify": notify})
    assert r.status_code == 201, r.text
    assert "notify" not in r.json() and all(v not in r.text for v in notify.values())
    return r.json()["id"]


def assert_told_once(svc, http, receiver, mailbox, job_id, path, address) -> None:
    """The job's webhook and mail arrived within a few seconds of its end, once each."""
    job = svc.wait_job(http, job_id, timeout=120)
    hook = wait_for(lambda: receiver.to(path))
    mail = wait_for(lambda: mailbox.to(address))
    time.sleep(1.5)  # any duplicate (two workers, a second claim) would arrive by now
    assert len(receiver.to(path)) == 1 and len(mailbox.to(address)) == 1
    assert hook[0]["at"] - finished(job) < 5 and mail[0]["at"] - finished(job) < 5
    data = verified(hook[0])
    assert data["job_id"] == job_id and data["status"] == job["status"] == "succeeded"
    assert data["user"] == job["user"] and data["app"] == "hello"
    assert data["link"].endswith(f"/api/v1/jobs/{job_id}")
    message = mail[0]["message"]
    assert message["To"] == address and "succeeded" in message["Subject"]
    assert data["link"] in message.get_content()
    assert event_types(http, job_id).count("notified") == 2


# --- tests ------------------------------------------------------------------------------------
def test_webhook_and_mail_arrive_once_signed_retried_and_bad_values_refused(
        local_services, receiver, mailbox):
    svc = local_services(capacity=4, workers=2, extra_config=notifier_config(mailbox))
    alice = svc.client("t-alice")
    ok = Client(svc.url, "t-alice").submit("hello", hpc="local", params={"delay": 0}, notify={
        "webhook": receiver.url("/ok"), "email": "alice@example.org"}).id  # the SDK
    cli = subprocess.run([sys.executable, "-m", "hpcbridge.cli", "submit", "hello", "--hpc",
                          "local", "--notify-webhook", receiver.url("/flaky"), "--no-wait",
                          "--json", "--url", svc.url, "--token", "t-alice"],
                         capture_output=True, text=True, timeout=60)
    assert cli.returncode == 0, cli.stderr
    flaky = json.loads(cli.stdout)["id"]  # the CLI
    gone = submit(alice, "local", {"webhook": receiver.url("/gone")})
    quiet = alice.post("jobs", json={"app": "hello", "hpc": "local", "params": {"delay": 0}})
    long = alice.post("jobs", json={"app": "hello", "hpc": "local", "params": {
        "lines": 60, "delay": 1}, "notify": {"webhook": receiver.url("/cancelled")}}).json()
    assert alice.post(f"jobs/{long['id']}/cancel").status_code == 202
    assert_told_once(svc, alice, receiver, mailbox, ok, "/ok", "alice@example.org")

    # 503, 503, then 200: sent three times, with back-off, and then never again
    wait_for(lambda: [r for r in receiver.to("/flaky") if r["status"] == 200])
    time.sleep(1.5)
    tries = receiver.to("/flaky")
    assert [r["status"] for r in tries] == [503, 503, 200]
    assert tries[2]["at"] - tries[1]["at"] > tries[1]["at"] - tries[0]["at"] > 0.5
    assert len({r["headers"]["X-Hpcbridge-Delivery"] for r in tries}) == 1
    assert all(verified(r)["job_id"] == flaky for r in tries)
    # a 404 will not get better: given up at once, and the job says so
    events = wait_for(lambda: [e for e in alice.get(f"jobs/{gone}/events").json()
                               if e["type"] == "notification_failed"])
    assert "404" in events[0]["message"] and len(receiver.to("/gone")) == 1
    assert svc.wait_job(alice, quiet.json()["id"])["status"] == "succeeded"
    # a cancel ends the job too (whichever process records it): told the same way
    cancelled = verified(wait_for(lambda: receiver.to("/cancelled"))[0])
    assert (cancelled["job_id"], cancelled["status"]) == (long["id"], "cancelled")
    assert len(mailbox.mails) == 1 and len(receiver.requests) == 6

    for notify, fragment in [
        ({"webhook": "ftp://127.0.0.1/x"}, "notify.webhook: must be an http"),
        ({"webhook": "http://user:pw@127.0.0.1/x"}, "user name or password"),
        ({"webhook": "http://10.0.0.1/x"}, "not among this site's webhook hosts"),
        ({"email": "alice"}, "notify.email: must be one plain address"),
        ({"email": "a@example.org\r\nBcc: b@example.org"}, "notify.email"),
        ({"webhook": "http://127.0.0.1/" + "x" * 2000}, "notify.webhook"),
        ({"sms": "+1555"}, "notify.sms"),
    ]:
        r = alice.post("jobs", json={"app": "hello", "hpc": "local", "notify": notify})
        assert r.status_code == 422, (notify, r.text)
        assert r.json()["error"] == "validation_error" and fragment in r.json()["message"], \
            r.json()


@pytest.mark.stack
@pytest.mark.slow
@pytest.mark.timeout(300)
def test_a_slurm_job_is_told_by_webhook_and_mail(tmp_path, stack, hub, ssh_target, receiver,
                                                 mailbox):
    wait_for_sshd(stack)
    svc = Services(str(tmp_path / "s"), stack, workers=2, auth="hub",
                   extra_config=notifier_config(mailbox))
    svc.hpcs = [slurm_hpc(stack, svc.run_id, capacity=4)]
    try:
        svc.start()
        alice = svc.client(token(stack, "alice"))
        job_id = submit(alice, "slurm", {"webhook": receiver.url("/slurm"),
                                         "email": "alice@example.org"})
        assert_told_once(svc, alice, receiver, mailbox, job_id, "/slurm", "alice@example.org")
    finally:
        try:
            cancel_leftovers(svc, stack)
        finally:
            svc.stop()
            remove_remote(stack, f"hpcbridge-it/{svc.run_id}")
