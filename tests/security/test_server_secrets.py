"""Secrets never reach the middleware's log (issue 20). The last module of the suite: the
suite's middleware (hub auth, on the stack's PostgreSQL, whose password holds '%', '@' and
'/') has served every test before this one, errors included; its whole log is scanned for
every token of the stack and of the suite, the database password in every spelling, and
key material. A middleware whose database cannot be opened says so in one line, with the
URL's password hidden, and no traceback."""
from __future__ import annotations

import os
from urllib.parse import quote

import httpx
import pytest
from services import Services, local_hpc, pg_password

pytestmark = [pytest.mark.stack, pytest.mark.slow]


def secrets_of(stack, hub, hub_users) -> dict[str, str]:
    """{what: secret} to look for."""
    found = {f"hub token of {who}": token for who, token in hub.tokens.items()}
    found.update({f"suite token of {who}": token for token, who in hub_users.tokens.items()})
    password = pg_password(stack)
    found.update({"database password": password,
                  "database password, quoted": quote(password, safe="")})
    with open(stack["ssh"]["key"]) as f:
        key = f.read()
    found["ssh private key (a line of it)"] = key.splitlines()[1]
    return found


def scan(text: str, secrets: dict[str, str]) -> list[str]:
    leaks = [what for what, secret in secrets.items() if secret and secret in text]
    if "PRIVATE KEY" in text:
        leaks.append("key material (PRIVATE KEY)")
    return leaks


def test_requests_with_every_kind_of_error_leave_no_secret_in_the_log(bridge, stack, hub,
                                                                     hub_users, odd_users):
    api = bridge.api
    token = next(iter(odd_users.values()))
    restricted, _ = hub_users.token(next(iter(odd_users)), [])
    calls = [
        ("GET", "me", {"Authorization": f"token {hub.tokens['alice']}"}, None),
        ("GET", f"me?token={hub.tokens['bob']}", {}, None),  # a token in the query
        ("GET", "me", {"Authorization": f"bearer {hub.tokens['service']}"}, None),
        ("GET", "me", {"Authorization": f"token {restricted}"}, None),  # 403
        ("GET", "me", {"Authorization": f"token {token}x"}, None),       # unknown: 401
        ("POST", "jobs", {"Authorization": f"token {token}"}, b"{not json"),
        ("POST", "jobs", {"Authorization": f"token {hub.tokens['admin']}"},
         b'{"app": "nope"}'),
        ("POST", "uploads", {"Authorization": f"token {token}"}, b""),
        ("GET", f"jobs/{'0' * 32}", {"Authorization": f"token {token}"}, None),
        ("POST", f"admin/users/{quote(hub.tokens['alice'])}/quota",
         {"Authorization": f"token {token}"}, b"{}"),
        ("GET", f"nowhere/{hub.tokens['admin']}", {}, None),
    ]
    statuses = []
    for method, path, headers, body in calls:
        r = httpx.request(method, f"{api}/{path}", headers=headers, content=body, timeout=30)
        statuses.append(r.status_code)
        assert r.status_code < 500, r.text
        assert not scan(r.text, {"token": hub.tokens["alice"]})
    assert {401, 403, 404, 400, 422} <= set(statuses), statuses
    secrets = secrets_of(stack, hub, hub_users)
    for name in ("server", "maintainer"):
        path = os.path.join(bridge.tmp, f"{name}.log")
        if os.path.exists(path):
            with open(path, errors="replace") as f:
                text = f.read()
            assert not scan(text, secrets), f"{name}.log holds {scan(text, secrets)}"
            assert "Traceback" not in text and " ERROR " not in text, text[-3000:]
    with open(os.path.join(bridge.tmp, "server.log"), errors="replace") as f:
        logged = f.read()
    assert "database postgresql+psycopg://hpcbridge:***@" in logged
    assert len(logged.splitlines()) > len(calls)  # (with the suite before: all of it)


@pytest.mark.parametrize("how", ["wrong password", "no such database"])
def test_a_database_that_cannot_be_opened_is_one_line_without_the_password(
        tmp_path, stack, how):
    pg = stack["postgres"]
    password = pg_password(stack) + ("%25x@y" if how == "wrong password" else "")
    database = "hpcbridge" if how == "wrong password" else "no_such_db_hpcbridge"
    url = (f"postgresql+psycopg://{pg['user']}:{quote(password, safe='')}"
           f"@{pg['host']}:{pg['port']}/{database}")
    svc = Services(str(tmp_path), stack, auth="hub",
                   hpcs=[local_hpc(str(tmp_path / "data"))],
                   extra_config=f"c.Site.db_url = {url!r}")
    try:
        with pytest.raises(RuntimeError, match="middleware exited"):
            svc.start(maintainer=False)
        assert svc.procs["server"].wait(10) == 1
    finally:
        svc.stop()
    with open(tmp_path / "server.log", errors="replace") as f:
        text = f.read()
    assert "cannot open the database postgresql+psycopg://hpcbridge:***@" in text, text
    assert "Traceback" not in text, text
    for secret in {password, quote(password, safe=""), pg_password(stack),
                   quote(pg_password(stack), safe="")}:
        assert secret not in text, text
