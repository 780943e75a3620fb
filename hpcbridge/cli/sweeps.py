"""`hpcbridge sweep ...`: submit a parameter sweep, see it, cancel it.

    hpcbridge sweep APP -p x=1,2,3 -p y=0:1:0.1 -p name=world   # a grid: 3 × 10 elements
    hpcbridge sweep status SWEEP_ID [--jobs]
    hpcbridge sweep cancel SWEEP_ID
    hpcbridge sweep list
"""
from __future__ import annotations

import argparse
import json

from ..client import Client
from ..errors import HPCBridgeError
from ..lifecycle import JobStatus
from .common import with_client
from .jobs import _pairs, _print_job

ACTIONS = ("status", "cancel", "list")


def _value(text: str):
    try:
        return json.loads(text)  # numbers and booleans as such
    except ValueError:
        return text


def _number(text: str):
    value = _value(text)
    return value if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def grid_of(items: list[str]) -> tuple[dict, dict]:
    """(grid, base) of -p options: NAME=a,b,c is a list of values, NAME=start:stop:step a
    range (stop left out), NAME=value one value every element shares."""
    grid, base = {}, {}
    for item in items:
        name, sep, text = item.partition("=")
        if not sep or not name:
            raise HPCBridgeError(f"--param must look like NAME=VALUE, NAME=a,b,c or "
                                 f"NAME=start:stop:step, not {item!r}")
        bounds = [_number(p) for p in text.split(":")]
        if len(bounds) == 3 and None not in bounds:
            grid[name] = {"range": bounds}
        elif "," in text:
            grid[name] = [_value(v) for v in text.split(",")]
        else:
            base[name] = _value(text)
    return grid, base


def _print_sweep(sweep, as_json: bool) -> None:
    if as_json:
        print(sweep.info.model_dump_json())
        return
    i = sweep.info
    counts = ", ".join(f"{n} {s}" for s, n in i.counts.items())
    print(f"{i.id}  {i.app}@{i.hpc}  {i.finished}/{i.size} ended  ({counts})")


def _run(command):
    """The command with a client, errors printed as every command prints them."""
    return lambda args: with_client(args, lambda client: command(client, args))


def cmd_sweep(client: Client, args) -> int:
    if args.app in ACTIONS:
        return ACTION_COMMANDS[args.app](client, args)
    if args.sweep_id is not None:
        raise HPCBridgeError(f"unexpected {args.sweep_id!r}: give the parameters with -p")
    grid, base = grid_of(args.param)
    if not grid:  # one element: every -p is a single value
        grid, base = {name: [value] for name, value in base.items()}, {}
    notify = {k: v for k, v in (("email", args.notify_email),
                                ("webhook", args.notify_webhook)) if v}
    sweep = client.sweep(args.app, grid=grid, base=base, hpc=args.hpc,
                         resources=_pairs(args.resource, "--resource"),
                         throttle=args.throttle, upload=args.upload, notify=notify or None)
    if not args.no_wait:
        sweep.wait(progress=not args.json)
    _print_sweep(sweep, args.json)
    ok = sweep.info.counts.get(JobStatus.SUCCEEDED.value, 0) == sweep.info.size
    return 0 if args.no_wait or ok else 1


def _sweep_id(args) -> str:
    if not args.sweep_id:
        raise HPCBridgeError(f"`hpcbridge sweep {args.app}` needs a sweep id")
    return args.sweep_id


def cmd_status(client: Client, args) -> int:
    sweep = client.get_sweep(_sweep_id(args))
    _print_sweep(sweep, args.json)
    if args.jobs:
        for job in sweep.jobs():
            if args.json:
                print(job.info.model_dump_json())
            else:
                print(f"  [{job.info.sweep_index}] ", end="")
                _print_job(job, False)
    return 0


def cmd_cancel(client: Client, args) -> int:
    _print_sweep(client.get_sweep(_sweep_id(args)).cancel(), args.json)
    return 0


def cmd_list(client: Client, args) -> int:
    sweeps = client.sweeps()
    if args.json:
        print(json.dumps([json.loads(s.info.model_dump_json()) for s in sweeps]))
    elif not sweeps:
        print("no sweeps")
    for sweep in [] if args.json else sweeps:
        _print_sweep(sweep, False)
    return 0


ACTION_COMMANDS = {"status": cmd_status, "cancel": cmd_cancel, "list": cmd_list}


def add_commands(sub, common: argparse.ArgumentParser) -> None:
    """Add this module's subcommands to `sub`; each sets `run=<function(args) -> exit code>`
    with parents=[common] (--url, --token, --json)."""
    p = sub.add_parser(
        "sweep", parents=[common], help="run an app over many parameter values (a sweep); "
        "`sweep status|cancel ID`, `sweep list`",
        description="hpcbridge sweep APP -p x=1,2,3 -p y=0:1:0.1 runs APP for every "
                    "combination (a range leaves its stop out). Also: hpcbridge sweep "
                    "status ID [--jobs], sweep cancel ID, sweep list.")
    p.set_defaults(run=_run(cmd_sweep))
    p.add_argument("app", metavar="APP|status|cancel|list")
    p.add_argument("sweep_id", nargs="?", help="the sweep (status, cancel)")
    p.add_argument("--hpc")
    p.add_argument("-p", "--param", action="append", default=[],
                   metavar="NAME=a,b,c|start:stop:step|value")
    p.add_argument("-r", "--resource", action="append", default=[], metavar="NAME=VALUE",
                   help="time (minutes), cpus, memory (MB), gpus, partition")
    p.add_argument("--throttle", type=int, metavar="N", help="at most N elements at once")
    p.add_argument("--upload", metavar="PATH", help="a file or folder every element gets")
    p.add_argument("--notify-email", metavar="ADDR",
                   help="mail this address once, when the whole sweep has ended")
    p.add_argument("--notify-webhook", metavar="URL",
                   help="POST a signed JSON message (sweep.ended) here when the sweep ended")
    p.add_argument("--no-wait", action="store_true")
    p.add_argument("--jobs", action="store_true", help="status: list every element too")
