"""The sender thread (server/background.py) and the publisher's merging of notices."""
from __future__ import annotations

import threading

from hpcbridge.server.background import Sender
from hpcbridge.server.eventbus import merged


def test_what_arrives_during_a_send_goes_in_the_next_one_together_in_order():
    calls: list[list] = []
    first_started, release = threading.Event(), threading.Event()

    def send(items):
        calls.append(items)
        if len(calls) == 1:
            first_started.set()
            assert release.wait(5)

    sender = Sender(send, "test")
    assert sender.put(0)
    assert first_started.wait(5)
    for i in range(1, 6):  # while the first batch is being sent
        assert sender.put(i)
    release.set()
    assert sender.flush(5)
    assert calls == [[0], [1, 2, 3, 4, 5]]
    sender.close()


def test_a_failing_send_is_logged_and_the_thread_goes_on(caplog):
    sent: list = []

    def send(items):
        if items == ["bad"]:
            raise RuntimeError("broken")
        sent.extend(items)

    sender = Sender(send, "test")
    sender.put("bad")
    assert sender.flush(5)
    sender.put("good")
    assert sender.flush(5)
    assert sent == ["good"]
    assert "1 item(s) not sent" in caplog.text
    sender.close()


def test_past_the_limit_put_says_no_and_close_sends_what_waits():
    gate = threading.Event()
    sent: list = []

    def send(items):
        assert gate.wait(5)
        sent.extend(items)

    sender = Sender(send, "test", limit=3)
    assert sender.put(1)
    assert sender.flush(0.2) is False  # held by the gate
    accepted = [sender.put(i) for i in range(2, 7)]
    assert accepted == [True, True, True, False, False]
    gate.set()
    sender.close(5)
    assert sent == [1, 2, 3, 4]
    assert sender.put(9) is False  # closed


def test_notices_merge_their_events_and_keep_log_notices():
    log = {"kind": "log", "job_id": "j", "text": "x"}
    notices = [{"kind": "events", "events": [[1, "a", "u"]]}, log,
               {"kind": "events", "events": [[2, "b", "u"], [3, "a", "u"]]}]
    assert merged(notices) == [{"kind": "events", "events": [[1, "a", "u"], [2, "b", "u"],
                                                             [3, "a", "u"]]}, log]
    assert merged([log]) == [log]
