"""The job commands of the CLI, on top of the SDK: readable by default, --json for scripts."""
from __future__ import annotations

import json
import sys

from ..client import Client, Job
from ..errors import HPCBridgeError
from ..lifecycle import JobStatus
from .common import with_client


def _pairs(items: list[str], what: str) -> dict:
    out = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise HPCBridgeError(f"{what} must look like NAME=VALUE, not {item!r}")
        try:
            out[name] = json.loads(value)  # numbers and booleans as such
        except ValueError:
            out[name] = value
    return out


def _print_job(job: Job, as_json: bool) -> None:
    if as_json:
        print(job.info.model_dump_json())
        return
    i = job.info
    print(f"{i.id}  {i.app}@{i.hpc}  {i.status}" + (f"  {i.message}" if i.message else ""))


def run_command(args) -> int:
    return with_client(args, lambda client: COMMANDS[args.func](client, args))


def cmd_submit(client: Client, args) -> int:
    notify = {k: v for k, v in (("email", args.notify_email),
                                ("webhook", args.notify_webhook)) if v}
    job = client.submit(args.app, hpc=args.hpc, params=_pairs(args.param, "--param"),
                        resources=_pairs(args.resource, "--resource"), upload=args.upload,
                        notify=notify or None)
    if not args.no_wait:
        job.wait(progress=not args.json)
    _print_job(job, args.json)
    return 0 if args.no_wait or job.status == JobStatus.SUCCEEDED else 1


def cmd_list(client: Client, args) -> int:
    jobs = client.jobs(status=args.status)
    if args.json:
        print(json.dumps([json.loads(j.info.model_dump_json()) for j in jobs]))
        return 0
    if not jobs:
        print("no jobs")
    for job in jobs:
        _print_job(job, False)
    return 0


def cmd_status(client: Client, args) -> int:
    _print_job(client.job(args.job_id), args.json)
    return 0


def cmd_logs(client: Client, args) -> int:
    job = client.job(args.job_id)
    if args.follow and args.json:  # JSON lines, one per piece of output as it comes
        for chunk in job.follow_logs(args.stream):
            print(json.dumps({"stream": args.stream, "data": chunk}), flush=True)
    elif args.follow:
        job.logs(args.stream, follow=True)
    else:
        text = job.logs(args.stream)
        if args.json:
            print(json.dumps({"stream": args.stream, "data": text}))
        else:
            sys.stdout.write(text)
    return 0


def cmd_cancel(client: Client, args) -> int:
    _print_job(client.job(args.job_id).cancel(), args.json)
    return 0


def cmd_download(client: Client, args) -> int:
    path = client.job(args.job_id).download(args.dest)
    print(json.dumps({"path": path}) if args.json else f"results in {path}")
    return 0


COMMANDS = {"submit": cmd_submit, "list": cmd_list, "status": cmd_status, "logs": cmd_logs,
            "cancel": cmd_cancel, "download": cmd_download}
