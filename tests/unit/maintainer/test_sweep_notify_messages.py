"""A sweep's message (maintainer/notify.py): the `sweep.ended` payload and mail, and the
outbox sending a sweep's row from the store to a real HTTP receiver, signed, once, with
the counts read from the store; the element that ended the sweep gets the `notified` event."""
from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import http.server
import json
import threading

from traitlets.config import Config

from hpcbridge.maintainer.notify import Outbox, SweepEnded, mail, payload
from hpcbridge.notifyrules import Notifier


def notifier(**settings) -> Notifier:
    config = Config()
    for name, value in {"webhook_secret": "s3cret", "smtp_host": "127.0.0.1",
                        **settings}.items():
        setattr(config.Notifier, name, value)
    return Notifier(config=config)


class FakeSweep:  # the Sweep row's fields the messages read
    id, user, app, hpc, size = "e" * 32, "alice", "hello", "slurm", 4
    ended_at = dt.datetime(2026, 11, 30, 12, 0)  # naive, as SQLite gives it back


class FakeNote:
    id, job_id, sweep_id, channel, target, attempts = 9, "f" * 32, "e" * 32, "email", \
        "alice@example.org", 1


def test_a_sweep_payload_and_mail_carry_counts_and_the_sweep_link():
    n = notifier(link_base_url="https://hub.example.org/services/hpcbridge/")
    ended = SweepEnded(FakeSweep, {"succeeded": 3, "failed": 1})
    data = payload(ended, n)
    assert data == {"event": "sweep.ended", "sweep_id": "e" * 32, "user": "alice",
                    "app": "hello", "hpc": "slurm", "size": 4,
                    "counts": {"failed": 1, "succeeded": 3},
                    "ended_at": "2026-11-30T12:00:00+00:00",
                    "link": f"https://hub.example.org/services/hpcbridge/api/v1/sweeps/{'e' * 32}"}
    msg = mail(ended, FakeNote, n)
    assert msg["Subject"] == "hpcbridge: your sweep of hello on slurm ended " \
                             "(3 succeeded, 1 failed)"
    body = msg.get_content()
    assert "e" * 32 in body and "3 succeeded, 1 failed" in body and data["link"] in body
    assert payload(ended, notifier())["link"] is None


def test_the_outbox_sends_a_sweeps_row_signed_once_and_the_element_says_so(store):
    seen = []

    class Hook(http.server.BaseHTTPRequestHandler):
        def do_POST(self):
            seen.append((dict(self.headers),
                         self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args):
            pass
    server = http.server.HTTPServer(("127.0.0.1", 0), Hook)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/sweep"
    sweep = store.create_sweep("alice", app="hello", hpc="local", resources={}, upload=None,
                               throttle=None, points=[{"name": "a"}, {"name": "b"}],
                               notify={"webhook": url})
    jobs = store.sweep_elements(sweep.id)
    store.transition(jobs[0].id, "cancelled", "cancelled")
    store.transition(jobs[1].id, "failed", "exit code 3")
    outbox = Outbox(store, notifier(webhook_hosts=["127.0.0.1"]))
    try:
        assert outbox.deliver_due() == 1
        assert outbox.deliver_due() == 0  # sent: never again
    finally:
        outbox.close()
        server.shutdown()
    [(headers, body)] = seen
    mac = hmac.new(b"s3cret", headers["X-HPCBridge-Timestamp"].encode() + b"." + body,
                   hashlib.sha256).hexdigest()
    assert headers["X-HPCBridge-Signature"] == "sha256=" + mac
    data = json.loads(body)
    assert (data["event"], data["sweep_id"], data["size"]) == ("sweep.ended", sweep.id, 2)
    assert data["counts"] == {"cancelled": 1, "failed": 1}
    [row] = store.notifications(sweep_id=sweep.id)
    assert row.status == "sent" and row.job_id == jobs[1].id
    event = store.events(jobs[1].id)[-1]
    assert event.type == "notified" and event.message.startswith(f"sweep {sweep.id} ended")
    assert "notified" not in [e.type for e in store.events(jobs[0].id)]
