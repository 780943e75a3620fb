"""Notifications (maintainer/notify.py) as plain functions: the webhook signature, the retry
schedule, which URLs and addresses are refused, and what the outbox does with each kind of
failure (on a real SQLite store). Delivery to a real HTTP receiver and SMTP server:
tests/integration/maintainer/test_notifications.py."""
from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import http.server
import json
import socket
import threading
import time
import types

import pytest
from traitlets.config import Config

from hpcbridge.clock import utcnow
from hpcbridge.config import Site
from hpcbridge.maintainer import notify
from hpcbridge.maintainer.notify import (
    Outbox,
    Permanent,
    mail,
    payload,
    public_targets,
    retry_delay,
    signature,
)
from hpcbridge.notifyrules import Notifier, channel_problem, email_problem, webhook_problem


def notifier(**settings) -> Notifier:
    config = Config()
    for name, value in {"webhook_secret": "s3cret", "smtp_host": "127.0.0.1", **settings}.items():
        setattr(config.Notifier, name, value)
    return Notifier(config=config)


# --- the signature -------------------------------------------------------------------------
def test_the_signature_is_the_hmac_of_timestamp_dot_body_as_a_receiver_computes_it():
    body = b'{"job_id":"abc","status":"succeeded"}'
    expected = hmac.new(b"s3cret", b"1700000000." + body, hashlib.sha256).hexdigest()
    assert signature("s3cret", "1700000000", body) == f"sha256={expected}"
    # the timestamp is signed: the same body at another time has another signature
    assert signature("s3cret", "1700000001", body) != signature("s3cret", "1700000000", body)
    assert signature("other", "1700000000", body) != signature("s3cret", "1700000000", body)


# --- the retry schedule ------------------------------------------------------------------------
def test_retry_waits_double_from_the_initial_one_up_to_the_cap_plus_bounded_jitter():
    n = notifier(retry_initial_seconds=5.0, retry_max_seconds=60.0, retry_jitter_seconds=2.0)
    for attempt, base in [(1, 5), (2, 10), (3, 20), (4, 40)]:
        delays = [retry_delay(attempt, n) for _ in range(200)]
        assert all(base <= d <= base + 2 for d in delays), (attempt, min(delays), max(delays))
        assert max(delays) - min(delays) > 0.5  # jittered, not in step
    assert all(60.0 <= retry_delay(a, n) <= 62.0 for a in (5, 10, 30))


# --- what is refused -----------------------------------------------------------------------------
@pytest.mark.parametrize("url,fragment", [
    ("ftp://hooks.example.org/x", "http:// or https://"),
    ("https:///x", "http:// or https://"),
    ("hooks.example.org/x", "http:// or https://"),
    ("https://user:pw@hooks.example.org/x", "user name or password"),
    ("https://hooks.example.org:99999/x", "not a URL"),
    ("https://hooks.example.org/a b", "spaces"),
    ("http://127.0.0.1:8080/x", "private, loopback"),
    ("http://10.1.2.3/x", "private, loopback"),
    ("http://169.254.169.254/latest/meta-data", "private, loopback"),
    ("http://[::1]/x", "private, loopback"),
    ("http://[::ffff:127.0.0.1]/x", "private, loopback"),
    ("http://localhost:8000/x", "own machines"),
])
def test_bad_or_internal_webhook_urls_are_refused(url, fragment):
    assert fragment in (webhook_problem(url, notifier()) or "")


def test_public_urls_pass_and_an_allowlist_decides_alone():
    assert webhook_problem("https://hooks.example.org/x?token=abc", notifier()) is None
    listed = notifier(webhook_hosts=["127.0.0.1", "*.example.org"])
    assert webhook_problem("http://127.0.0.1:9/x", listed) is None
    assert webhook_problem("https://a.b.example.org/x", listed) is None
    assert "not among" in webhook_problem("https://example.com/x", listed)
    assert "not among" in webhook_problem("https://evil-example.org/x", listed)


@pytest.mark.parametrize("address,ok", [
    ("alice@example.org", True), ("a.b+tag@sub.example.co.uk", True),
    ("alice", False), ("alice@localhost", False), ("@example.org", False),
    ("alice@example.org\r\nBcc: x@evil.org", False), ("Alice <alice@example.org>", False),
    ("a,b@example.org", False), ("a@-example.org", False), ("", False),
])
def test_only_one_plain_address_passes(address, ok):
    assert (email_problem(address) is None) is ok


def test_a_name_that_resolves_to_loopback_is_refused_when_sending():
    with pytest.raises(Permanent, match="private, loopback"):
        public_targets("localhost", 80, timeout=5)


# --- the messages -----------------------------------------------------------------------------
class FakeJob:  # the Job row's fields the messages read
    id, user, app, hpc, status = "f" * 32, "alice", "hello", "local", "failed"
    message, exit_code = "exit code 3", 3
    finished_at = dt.datetime(2026, 11, 30, 12, 0)  # naive, as SQLite gives it back


class FakeNote:
    id, job_id, channel, target, attempts = 7, "f" * 32, "email", "alice@example.org", 1


def test_payload_and_mail_carry_job_status_message_and_link():
    n = notifier(link_base_url="https://hub.example.org/services/hpcbridge/",
                 mail_from="HPC jobs <hpcbridge@example.org>")
    data = payload(FakeJob, n)
    assert data == {"event": "job.ended", "job_id": "f" * 32, "user": "alice", "app": "hello",
                    "hpc": "local", "status": "failed", "message": "exit code 3",
                    "exit_code": 3, "finished_at": "2026-11-30T12:00:00+00:00",
                    "link": f"https://hub.example.org/services/hpcbridge/api/v1/jobs/{'f' * 32}"}
    msg = mail(FakeJob, FakeNote, n)
    assert msg["To"] == "alice@example.org" and "failed" in msg["Subject"]
    assert msg["Auto-Submitted"] == "auto-generated"
    assert msg["Message-ID"].endswith("@example.org>")
    assert data["link"] in msg.get_content() and "exit code 3" in msg.get_content()
    assert payload(FakeJob, notifier())["link"] is None


# --- what the outbox does with failures ---------------------------------------------------------
@pytest.fixture
def outbox_with_row(store):
    def make(n: Notifier, notify: dict):
        job = store.create_job(user="alice", app="hello", hpc="local", params={},
                               resources={}, notify=notify)
        store.transition(job.id, "failed", "exit code 3")
        return Outbox(store, n), job
    return make


def test_a_permanent_failure_is_given_up_at_once_with_an_event(store, outbox_with_row):
    outbox, job = outbox_with_row(notifier(), {"webhook": "http://127.0.0.1:1/x"})
    try:
        assert outbox.deliver_due() == 1  # refused: a loopback address, not allowlisted
    finally:
        outbox.close()
    [row] = store.notifications(job.id)
    assert row.status == "failed" and row.attempts == 1 and "loopback" in row.last_error
    event = store.events(job.id)[-1]
    assert event.type == "notification_failed" and "after 1 attempt" in event.message


def test_a_passing_failure_is_retried_later_then_given_up_after_max_attempts(
        store, outbox_with_row):
    n = notifier(smtp_port=1, max_attempts=2, retry_initial_seconds=30, send_timeout=2)
    outbox, job = outbox_with_row(n, {"email": "alice@example.org"})
    try:
        assert outbox.deliver_due() == 1  # nothing listens on port 1: refused connection
        [row] = store.notifications(job.id)
        assert row.status == "pending" and row.attempts == 1 and row.last_error
        assert outbox.deliver_due() == 0  # not due yet
        later = utcnow() + dt.timedelta(seconds=60)
        [(note, j)] = store.claim_notifications(1, 60, now=later)
        outbox.failed(note, ConnectionRefusedError("refused"))
    finally:
        outbox.close()
    [row] = store.notifications(job.id)
    assert (row.status, row.attempts) == ("failed", 2)
    assert store.events(job.id)[-1].type == "notification_failed"


def test_a_site_without_secret_or_smtp_refuses_those_channels():
    bare = Notifier(config=Config())
    assert "no webhook secret" in channel_problem("webhook", bare)
    assert "no SMTP server" in channel_problem("email", bare)
    assert channel_problem("webhook", notifier()) is None
    assert channel_problem("email", notifier()) is None


def test_a_public_name_is_posted_to_the_address_checked_with_its_own_host_header(
        monkeypatch):
    """No allowlist: the name is resolved once, checked, and that address is used (a second
    lookup could answer a private one); the receiver still sees its own name."""
    seen = []

    class Hook(http.server.BaseHTTPRequestHandler):
        def do_POST(self):
            seen.append((self.headers["Host"], self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Hook)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    port = server.server_address[1]
    resolved = []
    monkeypatch.setattr(notify, "public_targets",
                        lambda host, p, timeout: resolved.append((host, p)) or ["127.0.0.1"])
    note = type("Note", (FakeNote,), {"channel": "webhook",
                                      "target": f"http://hooks.example.org:{port}/in"})
    try:
        assert notify.send_webhook(FakeJob, note, notifier()) == "webhook delivered (204)"
    finally:
        server.shutdown()
    assert resolved == [("hooks.example.org", port)]
    assert seen[0][0] == f"hooks.example.org:{port}"
    assert json.loads(seen[0][1])["job_id"] == FakeJob.id


def test_the_delivery_thread_outlives_a_failing_database_and_stops_when_told(store):
    """Rounds that raise (the database away) are logged and retried; `stop` ends the thread
    at once; its wake-up hook on the store is removed."""
    from hpcbridge.maintainer.notify import deliver_until_stopped
    from hpcbridge.server.store import Store

    class Flaky:
        calls = 0

        def claim_notifications(self, limit, lease):
            Flaky.calls += 1
            if Flaky.calls <= 2:
                raise OSError("database away")
            return store.claim_notifications(limit, lease)

        def __getattr__(self, name):
            return getattr(store, name)

    config = Config()
    config.Notifier.poll_seconds = 0.05
    config.Notifier.smtp_host = "127.0.0.1"
    rt = types.SimpleNamespace(site=Site(config=config), store=Flaky())
    hooks_before = list(Store.transition_hooks)
    stop = threading.Event()
    thread = threading.Thread(target=deliver_until_stopped, args=(rt, stop), daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 10
        while Flaky.calls < 4 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert Flaky.calls >= 4 and thread.is_alive()
    finally:
        stop.set()
        thread.join(5)
    assert not thread.is_alive() and Store.transition_hooks == hooks_before


def test_mail_refusals_are_told_apart_on_a_real_smtp_server():
    """550 for a recipient: given up; 451: again later; 250: sent."""
    from aiosmtpd.controller import Controller

    class Handler:
        async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
            answer = {"gone@example.org": "550 no such user",
                      "busy@example.org": "451 try again later"}.get(address, "250 OK")
            if answer.startswith("250"):
                envelope.rcpt_tos.append(address)
            return answer

        async def handle_DATA(self, server, session, envelope):
            return "250 OK"

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    controller = Controller(Handler(), hostname="127.0.0.1", port=port)
    controller.start()
    n = notifier(smtp_port=port, send_timeout=5)

    def to(address):
        return type("Note", (FakeNote,), {"target": address})
    try:
        assert notify.send_mail(FakeJob, to("ada@example.org"), n) == \
            "mail sent to ada@example.org"
        with pytest.raises(Permanent, match="550 no such user"):
            notify.send_mail(FakeJob, to("gone@example.org"), n)
        with pytest.raises(OSError) as busy:
            notify.send_mail(FakeJob, to("busy@example.org"), n)
        assert not isinstance(busy.value, Permanent)
    finally:
        controller.stop()
