"""Notifications when a job or a whole sweep ends (issue #25): the outbox rows the store wrote
with the final transition (a sweep's with its last element's), sent as signed webhooks and
mails, retried with back-off, never blocking a
worker's other work. Configured as `c.Notifier.*` (the middleware reads the same settings to
refuse, at submit, what would never be sent). Docs: docs/notifications.md."""
from __future__ import annotations

import concurrent.futures
import hashlib
import hmac
import json
import logging
import smtplib
import socket
import threading
import time
import types
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import make_msgid, parseaddr

import httpx
from tenacity import wait_exponential, wait_random

from hpcbridge.clock import aware
from hpcbridge.lifecycle import FINAL
from hpcbridge.notifyrules import (
    Notifier,
    channel_problem,
    email_problem,
    public_address,
    webhook_problem,
)

log = logging.getLogger("hpcbridge.maintainer.notify")

SIGNATURE_HEADER = "X-HPCBridge-Signature"
TIMESTAMP_HEADER = "X-HPCBridge-Timestamp"
DELIVERY_HEADER = "X-HPCBridge-Delivery"


class Permanent(Exception):
    """Sending again would fail the same way: give up now."""


# --- messages -------------------------------------------------------------------------------
@dataclass(frozen=True)
class SweepEnded:
    """What a sweep's message is about: the sweep and its elements by status."""

    sweep: object
    counts: dict[str, int]


def job_link(job, notifier: Notifier) -> str | None:
    base = notifier.link_base_url.rstrip("/")
    return f"{base}/api/v1/jobs/{job.id}" if base else None


def sweep_link(sweep, notifier: Notifier) -> str | None:
    base = notifier.link_base_url.rstrip("/")
    return f"{base}/api/v1/sweeps/{sweep.id}" if base else None


def payload(subject, notifier: Notifier) -> dict:
    """The webhook's JSON: `job.ended` for a job, `sweep.ended` for a sweep."""
    if isinstance(subject, SweepEnded):
        sweep = subject.sweep
        ended = aware(sweep.ended_at)
        return {"event": "sweep.ended", "sweep_id": sweep.id, "user": sweep.user,
                "app": sweep.app, "hpc": sweep.hpc, "size": sweep.size,
                "counts": dict(sorted(subject.counts.items())),
                "ended_at": ended.isoformat() if ended else None,
                "link": sweep_link(sweep, notifier)}
    job = subject
    finished = aware(job.finished_at)
    return {"event": "job.ended", "job_id": job.id, "user": job.user, "app": job.app,
            "hpc": job.hpc, "status": job.status, "message": job.message,
            "exit_code": job.exit_code,
            "finished_at": finished.isoformat() if finished else None,
            "link": job_link(job, notifier)}


def signature(secret: str, timestamp: str, body: bytes) -> str:
    """`sha256=<hex>` of HMAC-SHA256(secret, "<timestamp>." + body): the timestamp is
    signed too, so a receiver can refuse an old message sent again."""
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def retry_delay(attempt: int, notifier: Notifier) -> float:
    """Seconds to wait after failed attempt number `attempt` (1, 2, ...)."""
    wait = wait_exponential(multiplier=notifier.retry_initial_seconds,
                            max=notifier.retry_max_seconds) + \
        wait_random(0, notifier.retry_jitter_seconds)
    return wait(types.SimpleNamespace(attempt_number=attempt))


def counts_text(counts: dict[str, int]) -> str:
    """'3 succeeded, 1 failed' (final statuses, largest first)."""
    return ", ".join(f"{n} {status}" for status, n in
                     sorted(counts.items(), key=lambda item: (-item[1], item[0]))) or "-"


def mail_text(subject, notifier: Notifier) -> tuple[str, list[str]]:
    """(subject line, body lines) of the mail about a job's or a sweep's end."""
    data = payload(subject, notifier)
    if isinstance(subject, SweepEnded):
        sweep = subject.sweep
        title = (f"hpcbridge: your sweep of {sweep.app} on {sweep.hpc} ended "
                 f"({counts_text(subject.counts)})")
        lines = [f"Your sweep {sweep.id} ({sweep.size} elements of {sweep.app} on "
                 f"{sweep.hpc}) has ended: every element is final.", "",
                 f"Elements: {counts_text(subject.counts)}",
                 f"Ended:    {data['ended_at'] or '-'}"]
    else:
        job = subject
        title = f"hpcbridge: your job {job.app} on {job.hpc} {job.status}"
        lines = [f"Your job {job.id} ({job.app} on {job.hpc}) {job.status}.", "",
                 f"Message:  {job.message or '-'}", f"Finished: {data['finished_at'] or '-'}"]
        if data["exit_code"] is not None:
            lines.append(f"Exit code: {data['exit_code']}")
    if data["link"]:
        lines += ["", f"Details: {data['link']}"]
    return title, lines


def mail(subject, note, notifier: Notifier) -> EmailMessage:
    title, lines = mail_text(subject, notifier)
    msg = EmailMessage()
    msg["Subject"] = title
    msg["From"] = notifier.mail_from
    msg["To"] = note.target
    msg["Message-ID"] = make_msgid(domain=parseaddr(notifier.mail_from)[1].rpartition("@")[2]
                                   or None)
    msg["Auto-Submitted"] = "auto-generated"  # RFC 3834: no vacation replies
    msg.set_content("\n".join(lines) + "\n")
    return msg


# --- sending ----------------------------------------------------------------------------------
def public_targets(host: str, port: int, timeout: float) -> list[str]:
    """The host's addresses, if every one is public (else Permanent): what the webhook is
    sent to, so that a name cannot be resolved again to another address in between."""
    pool = concurrent.futures.ThreadPoolExecutor(1)  # getaddrinfo itself has no timeout
    try:
        infos = pool.submit(socket.getaddrinfo, host, port, type=socket.SOCK_STREAM
                            ).result(timeout)
    except concurrent.futures.TimeoutError:
        raise OSError(f"no address for {host} within {timeout:.0f} s") from None
    finally:
        pool.shutdown(wait=False)
    addresses = list(dict.fromkeys(info[4][0] for info in infos))
    if not addresses or not all(public_address(a) for a in addresses):
        raise Permanent(f"{host} resolves to a private, loopback or link-local address")
    return addresses


def send_webhook(subject, note, notifier: Notifier) -> str:
    problem = webhook_problem(note.target, notifier) or channel_problem("webhook", notifier)
    if problem:
        raise Permanent(problem)
    body = json.dumps(payload(subject, notifier), separators=(",", ":")).encode()
    timestamp = str(int(time.time()))
    headers = {"Content-Type": "application/json", "User-Agent": "hpcbridge-notify",
               TIMESTAMP_HEADER: timestamp, DELIVERY_HEADER: str(note.id),
               SIGNATURE_HEADER: signature(notifier.webhook_secret, timestamp, body)}
    url, extensions = httpx.URL(note.target), {}
    if not notifier.webhook_hosts and not notifier.webhook_proxy:
        address = public_targets(url.host, url.port or (443 if url.scheme == "https" else 80),
                                 notifier.send_timeout)[0]
        headers["Host"] = url.netloc.decode("ascii")
        extensions = {"sni_hostname": url.host}
        url = url.copy_with(host=address)
    with httpx.Client(timeout=notifier.send_timeout, follow_redirects=False, trust_env=False,
                      proxy=notifier.webhook_proxy or None) as client:
        response = client.post(url, content=body, headers=headers, extensions=extensions)
    if response.is_success:
        return f"webhook delivered ({response.status_code})"
    error = f"the webhook answered {response.status_code} {response.reason_phrase}"
    if response.status_code in (408, 425, 429) or response.status_code >= 500:
        raise OSError(error)  # the receiver's trouble: again later
    raise Permanent(error)  # 3xx (never followed) and other 4xx: sending again will not help


def send_mail(subject, note, notifier: Notifier) -> str:
    problem = email_problem(note.target) or channel_problem("email", notifier)
    if problem:
        raise Permanent(problem)
    message = mail(subject, note, notifier)
    try:
        with smtplib.SMTP(notifier.smtp_host, notifier.smtp_port,
                          timeout=notifier.send_timeout) as smtp:
            if notifier.smtp_starttls:
                smtp.starttls()
            if notifier.smtp_user:
                smtp.login(notifier.smtp_user, notifier.smtp_password)
            smtp.send_message(message)
    except smtplib.SMTPRecipientsRefused as exc:
        code, text = next(iter(exc.recipients.values()), (0, b""))
        if 500 <= code < 600:
            raise Permanent(f"the mail server refused {note.target}: {code} "
                            f"{text.decode(errors='replace')}") from None
        raise  # 4xx: again later
    except (smtplib.SMTPAuthenticationError, smtplib.SMTPSenderRefused) as exc:
        log.error("the mail server refuses this site's login or sender (c.Notifier.smtp_user, "
                  "mail_from): %s; mails wait and are tried again", exc)
        raise  # the site's settings: every mail waits until they are fixed
    except smtplib.SMTPResponseException as exc:
        if 500 <= exc.smtp_code < 600:
            raise Permanent(f"the mail server refused the mail: {exc.smtp_code} "
                            f"{exc.smtp_error.decode(errors='replace')}") from None
        raise  # 4xx: again later
    return f"mail sent to {note.target}"


SENDERS = {"webhook": send_webhook, "email": send_mail}


class Outbox:
    """One worker's share of the outbox: claims due messages, sends them a few at a time,
    writes each outcome."""

    def __init__(self, store, notifier: Notifier):
        self.store, self.notifier = store, notifier
        self.pool = concurrent.futures.ThreadPoolExecutor(
            max(1, notifier.concurrency), thread_name_prefix="hpcbridge-notify-send")

    def deliver_due(self) -> int:
        """Send what is due now (at most `concurrency` messages); how many were claimed."""
        n = self.notifier
        claimed = self.store.claim_notifications(max(1, n.concurrency), n.lease_seconds)
        futures = {}
        for note, job in claimed:
            subject = self.subject(note, job)
            futures[self.pool.submit(SENDERS[note.channel], subject, note, n)] = note
        for future, note in futures.items():
            try:
                outcome = future.result(timeout=2 * n.send_timeout + 10)
            except Exception as exc:  # every failure is an outcome: retried or given up
                outcome = exc
            try:
                if isinstance(outcome, Exception):
                    self.failed(note, outcome)
                else:
                    self.sent(note, outcome)
            except Exception:  # the database, not the send: the others still get recorded
                log.exception("notification %s of job %s: outcome not recorded (it is tried "
                              "again when its claim ends)", note.id, note.job_id)
        return len(claimed)

    def subject(self, note, job):
        """What the message is about: the job, or for a sweep's row its sweep and counts
        (all final by now: read at send time, as the job is)."""
        if note.sweep_id is None:
            return job
        return SweepEnded(self.store.get_sweep(note.sweep_id),
                          self.store.sweep_counts([note.sweep_id])[note.sweep_id])

    def sent(self, note, message: str) -> None:
        log.info("notification %s of job %s: %s", note.id, note.job_id, message)
        self.store.notification_sent(note, about(note) + message)

    def failed(self, note, exc: Exception) -> None:
        error = describe(exc)
        what = "webhook" if note.channel == "webhook" else f"mail to {note.target}"
        if isinstance(exc, Permanent) or note.attempts >= self.notifier.max_attempts:
            log.warning("notification %s of job %s given up after %d attempts: %s",
                        note.id, note.job_id, note.attempts, error)
            self.store.notification_failed(
                note, f"{about(note)}{what} not sent after {note.attempts} attempt(s): {error}", error)
            return
        delay = retry_delay(note.attempts, self.notifier)
        log.info("notification %s of job %s: attempt %d failed (%s); again in %.1f s",
                 note.id, note.job_id, note.attempts, error, delay)
        self.store.notification_retry(note, delay, error)

    def close(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)


def about(note) -> str:
    """The prefix of the event a sweep's message leaves on the element that ended it."""
    return f"sweep {note.sweep_id} ended: " if note.sweep_id else ""


def describe(exc: Exception) -> str:
    if isinstance(exc, Permanent | OSError) and str(exc):
        return str(exc)
    if isinstance(exc, concurrent.futures.TimeoutError):
        return "no answer in time"
    if isinstance(exc, httpx.HTTPError):
        return f"the webhook could not be reached: {type(exc).__name__} {exc}".strip()
    return f"{type(exc).__name__}: {exc}"


def deliver_until_stopped(rt, stop: threading.Event) -> None:
    """A worker thread: send due notifications until `stop`. Never raises: a failing round
    (the database away) is logged and tried again ever more slowly."""
    from hpcbridge.server.store import Store
    wake = threading.Event()

    def on_transition(job_id, status):  # a job ended in this process: look at once
        if status in FINAL:
            wake.set()
    try:
        notifier = Notifier(parent=rt.site)
        outbox = Outbox(rt.store, notifier)
    except Exception:
        log.exception("notifications are off in this worker: bad Notifier settings")
        return
    Store.transition_hooks.append(on_transition)
    failures = 0
    try:
        while not stop.is_set():
            wake.clear()  # before the claim: a job ending during the round is seen next
            try:
                busy = outbox.deliver_due()
                failures = 0
            except Exception:
                failures += 1
                log.exception("notification round failed (%d in a row)", failures)
                busy = 0
            if not busy:
                pause_until(min(notifier.poll_seconds * 2 ** failures, 60.0), wake, stop)
    finally:
        Store.transition_hooks.remove(on_transition)
        outbox.close()


def pause_until(seconds: float, wake: threading.Event, stop: threading.Event) -> None:
    """Wait `seconds`, or less if `wake` or `stop` is set meanwhile."""
    deadline = time.monotonic() + seconds
    while not (wake.is_set() or stop.is_set()):
        left = deadline - time.monotonic()
        if left <= 0:
            return
        wake.wait(min(left, 0.5))
