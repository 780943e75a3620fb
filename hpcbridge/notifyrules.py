"""The notification settings and the rules on where a message may go: read by the
middleware (refusing at submit what would never be sent) and by the maintainer's sender
(maintainer/notify.py). Configured as `c.Notifier.*`. Docs: docs/notifications.md."""
from __future__ import annotations

import ipaddress
import os
import re
from email.headerregistry import Address
from urllib.parse import urlsplit

from traitlets import Bool, Float, Int, List, Unicode, default
from traitlets.config import Configurable

# local@domain, no spaces, quotes, angle brackets or line breaks (a header injection)
EMAIL = re.compile(r"[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]{1,64}@"
                   r"(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
                   r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)+")




class Notifier(Configurable):
    """Where and how the messages about ended jobs are sent."""

    webhook_secret = Unicode(help="""HMAC-SHA256 key that signs every webhook (header
        X-HPCBridge-Signature). Empty: this site sends no webhooks, and a job asking for one
        is refused. Default: $HPCBRIDGE_WEBHOOK_SECRET.""").tag(config=True)

    @default("webhook_secret")
    def _secret(self):
        return os.environ.get("HPCBRIDGE_WEBHOOK_SECRET", "")

    webhook_hosts = List(Unicode(), help="""Hosts webhooks may go to ('hooks.example.org', or
        '*.example.org' for its subdomains). Empty (the default): any host whose addresses
        are all public; private, loopback and link-local addresses are refused (a user's URL
        must not reach the site's internal services). Listed hosts are trusted as they are,
        private addresses included.""").tag(config=True)
    webhook_proxy = Unicode("", help="""An HTTP(S) proxy every webhook goes through (e.g. an
        egress proxy that enforces the site's own rules); empty: direct.""").tag(config=True)
    smtp_host = Unicode("", help="""SMTP server that sends the mails. Empty: this site sends
        no mail, and a job asking for one is refused.""").tag(config=True)
    smtp_port = Int(25, help="SMTP port (587 with smtp_starttls, usually).").tag(config=True)
    smtp_starttls = Bool(False, help="Upgrade the SMTP connection with STARTTLS."
                         ).tag(config=True)
    smtp_user = Unicode("", help="SMTP login; empty: none.").tag(config=True)
    smtp_password = Unicode("", help="SMTP password. Default: $HPCBRIDGE_SMTP_PASSWORD."
                            ).tag(config=True)

    @default("smtp_password")
    def _smtp_password(self):
        return os.environ.get("HPCBRIDGE_SMTP_PASSWORD", "")

    mail_from = Unicode("hpcbridge@localhost", help="The mails' From address."
                        ).tag(config=True)
    link_base_url = Unicode("", help="""Public URL of the middleware (e.g.
        https://hub.example.org/services/hpcbridge); messages link to <it>/api/v1/jobs/<id>.
        Empty: no link.""").tag(config=True)
    send_timeout = Float(10.0, help="Seconds one send (connect, TLS, answer) may take."
                         ).tag(config=True)
    max_attempts = Int(8, help="""Attempts per message before it is given up (the row is
        failed and the job gets a notification_failed event).""").tag(config=True)
    retry_initial_seconds = Float(5.0, help="""Wait after the first failed attempt; doubled
        after each further one (plus jitter), up to retry_max_seconds.""").tag(config=True)
    retry_max_seconds = Float(600.0, help="Longest wait between two attempts."
                              ).tag(config=True)
    retry_jitter_seconds = Float(2.0, help="""A random 0..this many seconds added to each
        wait, so that many messages to one failing receiver do not come back in step."""
                                 ).tag(config=True)
    poll_seconds = Float(2.0, help="""How often each worker looks for due messages (a job
        ending in the same worker wakes it at once).""").tag(config=True)
    concurrency = Int(4, help="Messages one worker sends at once.").tag(config=True)

    @property
    def lease_seconds(self) -> float:  # a claimed message is the claimer's: past any send
        return 3 * self.send_timeout + 30


# --- rules shared with the middleware's submit-time checks ----------------------------------
def host_allowed(host: str, patterns) -> bool:
    host = host.lower().rstrip(".")
    for pattern in patterns:
        pattern = pattern.lower().rstrip(".")
        if host == pattern or (pattern.startswith("*.") and host.endswith(pattern[1:])):
            return True
    return False


def public_address(address: str) -> bool:
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    mapped = getattr(ip, "ipv4_mapped", None)
    return (mapped or ip).is_global and not (mapped or ip).is_multicast


def webhook_problem(url: str, notifier: Notifier) -> str | None:
    """Why this webhook URL is refused, or None. Host names are resolved only when sending
    (public_targets): here only what the URL itself shows is judged."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises on a bad port
    except ValueError as exc:
        return f"not a URL: {exc}"
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return "must be an http:// or https:// URL with a host"
    if parts.username is not None or parts.password is not None:
        return "must not hold a user name or password (put a token in the path or query)"
    if any(ch.isspace() or ord(ch) < 32 for ch in url):
        return "must not hold spaces or control characters"
    host = parts.hostname
    if notifier.webhook_hosts:
        return None if host_allowed(host, notifier.webhook_hosts) else \
            f"host {host} is not among this site's webhook hosts"
    if host in ("localhost",) or host.endswith(".localhost"):
        return "must not point at this site's own machines"
    try:
        if not public_address(host):
            return "must not point at a private, loopback or link-local address"
    except ValueError:
        pass  # a name: judged when it is resolved
    return None


def email_problem(address: str) -> str | None:
    if not EMAIL.fullmatch(address or ""):
        return "must be one plain address such as name@example.org"
    try:
        Address(addr_spec=address)
    except (ValueError, IndexError) as exc:
        return f"not an address: {exc}"
    return None


def channel_problem(channel: str, notifier: Notifier) -> str | None:
    """Why this site cannot send on `channel` at all, or None."""
    if channel == "webhook" and not notifier.webhook_secret:
        return "this site sends no webhooks (no webhook secret is configured)"
    if channel == "email" and not notifier.smtp_host:
        return "this site sends no mail (no SMTP server is configured)"
    return None
