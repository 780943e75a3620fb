"""Secrets out of logs: a database URL is shown without its password."""
from __future__ import annotations

import re
import urllib.parse


def hide_password(url: str) -> str:
    """The URL with its password as ***; something that is not a URL is not shown."""
    from sqlalchemy.engine import make_url
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return "<a database URL that cannot be parsed>"


def password_of(url: str) -> str | None:
    from sqlalchemy.engine import make_url
    try:
        return make_url(url).password
    except Exception:
        # unparsable: whatever sits between "user:" and "@" may be a password
        rest = url.partition("://")[2]
        userinfo = rest.rpartition("@")[0]
        return userinfo.partition(":")[2] or None


def redact(text: str, url: str) -> str:
    """`text` with the URL's password (as written, and decoded) replaced by ***."""
    password = password_of(url)
    if password:
        for form in {password, urllib.parse.quote(password, safe=""),
                     urllib.parse.unquote(password)}:
            if form:
                text = text.replace(form, "***")
    return text


_HEX_RUN = re.compile(r"[0-9a-fA-F]{32,}")


def loggable_path(path: str, status: int) -> str:
    """The path of a request as the access log shows it. JupyterHub tokens are 32 hex
    digits, like job ids: in the path of a refused request (status >= 400: a token pasted
    where an id goes, or into an unknown route) each such run shows only its start."""
    if status < 400:
        return path
    return _HEX_RUN.sub(lambda m: m.group(0)[:6] + "…", path)
