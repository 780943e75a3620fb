"""`hpcbridge admin hpcs|workers|stuck|users|drain|resume|requeue|cancel` (hub admin token):
rich tables by default, --json for scripts."""
from __future__ import annotations

import argparse
import datetime as dt
import json

from ..schemas_admin import DEFAULT_STUCK_SECONDS
from .common import with_client


def add_commands(sub, common: argparse.ArgumentParser) -> None:
    """Add this module's subcommands to `sub`; each sets `run=<function(args) -> exit code>`
    with parents=[common] (--url, --token, --json)."""
    admin = sub.add_parser("admin", help="operate the service (needs a hub admin's token)")
    commands = admin.add_subparsers(title="admin commands", metavar="COMMAND")

    def command(name: str, text: str, table) -> argparse.ArgumentParser:
        p = commands.add_parser(name, parents=[common], help=text)
        p.set_defaults(run=lambda args: _run(args, table), admin_command=name)
        return p
    command("hpcs", "health of each HPC", _hpcs)
    command("workers", "maintainer workers: heartbeats, HPCs polled, jobs held", _workers)
    p = command("stuck", "jobs in one status for too long", _stuck)
    p.add_argument("--older-than", type=int, default=DEFAULT_STUCK_SECONDS, metavar="SECONDS",
                   help=f"seconds in the same status (default {DEFAULT_STUCK_SECONDS})")
    p.add_argument("--hpc")
    command("users", "usage per user: jobs, CPU-seconds, quota", _users)
    for name, text in (("drain", "stop admitting jobs to an HPC"),
                       ("resume", "admit jobs to an HPC again")):
        command(name, text, _drain).add_argument("hpc")
    command("requeue", "offer a job stuck in staging or finishing again", _requeue) \
        .add_argument("job_id")
    command("cancel", "cancel anybody's job", _cancel).add_argument("job_id")
    admin.set_defaults(run=lambda args: (admin.print_help(), 0)[1])


def _run(args, table) -> int:
    return with_client(args, lambda client: _show(args, *table(client, args)))


def _show(args, data, render) -> int:
    if getattr(args, "json", False):
        print(json.dumps(data, indent=1))
    else:
        from rich.console import Console
        Console(width=max(120, Console().width)).print(render(data))
    return 0


def _table(title: str, columns: list[str], rows: list[list]):
    from rich.table import Table
    from rich.text import Text
    table = Table(title=title, title_justify="left")
    for name in columns:
        table.add_column(name, overflow="fold")
    for row in rows:  # as plain Text: messages are never read as markup or :emoji:
        table.add_row(*(Text("" if v is None else str(v)) for v in row))
    if not rows:
        table.caption = "none"
    return table


def _ago(stamp: str | None) -> str:
    if not stamp:
        return "never"
    then = dt.datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    seconds = (dt.datetime.now(dt.timezone.utc) - then).total_seconds()
    return _span(seconds) + " ago"


def _span(seconds: float) -> str:
    seconds = max(0, int(seconds))
    if seconds < 120:
        return f"{seconds}s"
    if seconds < 7200:
        return f"{seconds // 60}m"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


def _reachable(h: dict) -> str:
    hpc = h["hpc"]
    word = {True: "yes", False: "NO", None: "unknown"}[hpc["reachable"]]
    return word + (" (draining)" if hpc["draining"] else "")


def _hpcs(client, args):
    def render(data):
        return _table("HPCs", ["hpc", "reachable", "jobs", "last cycle", "cycle s",
                               "commands/min", "last error"],
                      [[h["hpc"]["id"], _reachable(h),
                        f"{h['hpc']['active_jobs']}/{h['hpc']['capacity']}",
                        _ago(h["last_cycle"]["at"]), h["last_cycle"]["seconds"],
                        f"{h['commands_per_minute']:g} / {h['commands_cap']}",
                        h["last_error"] or h["stats_error"]] for h in data])
    return client._json("GET", "admin/hpcs"), render


def _workers(client, args):
    def render(data):
        return _table("Workers", ["worker", "host", "pid", "alive", "heartbeat", "polls",
                                  "holds jobs"],
                      [[w["id"], w["host"], w["pid"], "yes" if w["alive"] else "NO",
                        _ago(w["heartbeat_at"]), ", ".join(w["leases"]),
                        "?" if w.get("claims") is None else ", ".join(w["claims"])]
                       for w in data])
    return client._json("GET", "admin/workers"), render


def _stuck(client, args):
    params = {"older_than": args.older_than, **({"hpc": args.hpc} if args.hpc else {})}

    def render(data):
        return _table(f"Jobs in one status for more than {_span(args.older_than)}",
                      ["job", "user", "hpc", "status", "for", "claimed by", "last event"],
                      [[s["job"]["id"], s["job"]["user"], s["job"]["hpc"], s["job"]["status"],
                        _span(s["stuck_seconds"]), _holder(s),
                        f"{s['last_event']['type']}: {s['last_event']['message']}"
                        if s["last_event"] else None] for s in data])
    return client._json("GET", "admin/stuck", params=params), render


def _holder(stuck: dict) -> str | None:
    if not stuck["claimed_by"]:
        return None
    return stuck["claimed_by"] + ("" if stuck["claim_holder_alive"] else " (dead)")


def _users(client, args):
    def render(data):
        return _table("Usage", ["user", "jobs", "active", "CPU-seconds", "quota used/limit"],
                      [[u["user"], ", ".join(f"{k} {v}" for k, v in sorted(u["jobs"].items())),
                        u["active_jobs"], f"{u['charged_seconds']:g}",
                        f"{u['quota']['used_seconds']:g} / "
                        f"{'none' if u['quota']['limit_seconds'] is None else u['quota']['limit_seconds']}"]
                       for u in data])
    return client._json("GET", "admin/users"), render


def _drain(client, args):
    action = args.admin_command
    data = client._json("POST", f"admin/hpcs/{args.hpc}/{action}")

    def render(data):
        return _table("HPCs", ["hpc", "draining", "reachable", "jobs"],
                      [[h["id"], "yes" if h["draining"] else "no", h["reachable"],
                        f"{h['active_jobs']}/{h['capacity']}"] for h in data])
    return data, render


def _requeue(client, args):
    data = client._json("POST", f"admin/jobs/{args.job_id}/requeue")
    return data, lambda d: f"{d['job']['id']} ({d['job']['status']}): {d['message']}"


def _cancel(client, args):
    data = client._json("POST", f"admin/jobs/{args.job_id}/cancel")
    return data, lambda d: f"{d['id']} {d['status']}: cancel requested"
