"""`hpcbridge` command line: server, maintainer, demo, and the job commands (SDK)."""
from __future__ import annotations

import argparse
import sys

from .._version import __version__


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    # Services are traitlets applications with their own flags (--help-all, --generate-config).
    if argv and argv[0] == "server":
        from hpcbridge.server.app import HPCBridgeServer
        HPCBridgeServer.launch_instance(argv[1:])
        return 0
    if argv and argv[0] == "maintainer":
        from hpcbridge.maintainer.app import MaintainerApp
        MaintainerApp.launch_instance(argv[1:])
        return 0
    if argv and argv[0] == "demo":
        from hpcbridge.demo import DemoApp
        DemoApp.launch_instance(argv[1:])
        return 0
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "run", None):  # the session, sweep and admin commands
        return args.run(args)
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    from .jobs import run_command
    return run_command(args)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hpcbridge", description="Run HPC jobs from JupyterLab, a notebook or a terminal.",
        epilog="services: `hpcbridge server`, `hpcbridge maintainer`, `hpcbridge demo` "
               "(each takes --help)")
    parser.add_argument("--version", action="version", version=f"hpcbridge {__version__}")
    parser.add_argument("--url", help="middleware URL (default: $HPCBRIDGE_URL)")
    parser.add_argument("--token", help="token (default: $HPCBRIDGE_TOKEN or "
                                        "$JUPYTERHUB_API_TOKEN)")
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    # The same options after the command (`hpcbridge submit hello --json`); SUPPRESS keeps
    # a value given before the command when they are not repeated after it.
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--url", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    common.add_argument("--token", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    common.add_argument("--json", action="store_true", default=argparse.SUPPRESS,
                        help="machine-readable output")
    sub = parser.add_subparsers(title="job commands", metavar="COMMAND")
    for name in ("server", "maintainer", "demo"):
        sub.add_parser(name, help=f"run the {name} (see `hpcbridge {name} --help`)")

    def command(name: str, text: str, job_id: bool = False) -> argparse.ArgumentParser:
        p = sub.add_parser(name, parents=[common], help=text)
        p.set_defaults(func=name)
        if job_id:
            p.add_argument("job_id")
        return p
    p = command("submit", "submit a job and (by default) wait for it")
    p.add_argument("app")
    p.add_argument("--hpc")
    p.add_argument("-p", "--param", action="append", default=[], metavar="NAME=VALUE")
    p.add_argument("-r", "--resource", action="append", default=[], metavar="NAME=VALUE",
                   help="time (minutes), cpus, memory (MB), gpus, partition")
    p.add_argument("--upload", metavar="PATH", help="a file or folder to send with the job")
    p.add_argument("--notify-email", metavar="ADDR", help="mail this address when it ends")
    p.add_argument("--notify-webhook", metavar="URL",
                   help="POST a signed JSON message to this URL when it ends")
    p.add_argument("--no-wait", action="store_true")
    command("list", "your jobs").add_argument("--status", action="append")
    command("status", "one job", job_id=True)
    p = command("logs", "a job's output", job_id=True)
    p.add_argument("-f", "--follow", action="store_true")
    p.add_argument("--stream", choices=["stdout", "stderr"], default="stdout")
    command("cancel", "cancel a job", job_id=True)
    command("download", "download a job's results", job_id=True).add_argument(
        "dest", nargs="?", default=None)
    from . import admin, sessions, sweeps
    for module in (sweeps, sessions, admin):
        module.add_commands(sub, common)
    return parser
