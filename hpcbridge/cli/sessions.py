"""`hpcbridge session start|list|status|stop|quota`: interactive sessions from a terminal.

    hpcbridge session start jupyterlab -r time=60 --wait     # prints the URL once it runs
    hpcbridge session list
    hpcbridge session stop SESSION_ID
"""
from __future__ import annotations

import argparse
import json

from .common import with_client
from .jobs import _pairs


def add_commands(sub, common: argparse.ArgumentParser) -> None:
    """Add this module's subcommands to `sub`; each sets `run=<function(args) -> exit code>`
    with parents=[common] (--url, --token, --json)."""
    session = sub.add_parser("session", help="interactive sessions (a service app on the "
                                             "cluster, e.g. JupyterLab)")
    commands = session.add_subparsers(title="session commands", metavar="COMMAND")

    def command(name: str, text: str, action) -> argparse.ArgumentParser:
        p = commands.add_parser(name, parents=[common], help=text)
        p.set_defaults(run=lambda args: _run(args, action))
        return p
    p = command("start", "start a session (with --wait: until its service runs)", _start)
    p.add_argument("app")
    p.add_argument("--hpc")
    p.add_argument("-p", "--param", action="append", default=[], metavar="NAME=VALUE")
    p.add_argument("-r", "--resource", action="append", default=[], metavar="NAME=VALUE",
                   help="time (minutes), cpus, memory (MB), gpus, partition")
    p.add_argument("--wait", action="store_true", help="wait until it runs (or ends)")
    p.add_argument("--timeout", type=float, default=600, metavar="SECONDS",
                   help="how long --wait waits (default 600)")
    command("list", "your sessions", _list).add_argument(
        "--all", action="store_true", help="everybody's (admins)")
    command("status", "one session", _status).add_argument("session_id")
    command("stop", "stop a session", _stop).add_argument("session_id")
    command("quota", "session time allowed and used", _quota)
    session.set_defaults(run=lambda args: (session.print_help(), 0)[1])


def _run(args, action) -> int:
    return with_client(args, lambda client: action(client, args, getattr(args, "json", False)))


def _show(session, as_json: bool) -> None:
    if as_json:
        data = json.loads(session.info.model_dump_json())
        print(json.dumps({**data, "url": session.url}))
        return
    i = session.info
    line = f"{i.id}  {i.app}@{i.hpc}  {i.status}"
    if i.status == "running":
        line += f"  {session.url}"
    print(line + (f"  {i.message}" if i.message else ""))


def _start(client, args, as_json: bool) -> int:
    session = client.start_session(args.app, hpc=args.hpc,
                                   params=_pairs(args.param, "--param"),
                                   resources=_pairs(args.resource, "--resource"))
    if args.wait:
        session.wait_ready(timeout=args.timeout, progress=not as_json)
    _show(session, as_json)
    return 0


def _list(client, args, as_json: bool) -> int:
    sessions = client.sessions(all_users=args.all)
    if as_json:
        print(json.dumps([{**json.loads(s.info.model_dump_json()), "url": s.url}
                          for s in sessions]))
        return 0
    if not sessions:
        print("no sessions")
    for session in sessions:
        _show(session, False)
    return 0


def _status(client, args, as_json: bool) -> int:
    _show(client.session(args.session_id), as_json)
    return 0


def _stop(client, args, as_json: bool) -> int:
    _show(client.session(args.session_id).stop(), as_json)
    return 0


def _quota(client, args, as_json: bool) -> int:
    quota = client.session_quota()
    if as_json:
        print(quota.model_dump_json())
    elif quota.limit_seconds is None:
        print(f"{quota.used_seconds / 3600:.2f} h of session time used (no limit)")
    else:
        print(f"{quota.used_seconds / 3600:.2f} h of {quota.limit_seconds / 3600:.2f} h of "
              "session time used")
    return 0
