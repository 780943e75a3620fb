"""`hpcbridge session start|list|stop`."""
from __future__ import annotations

import argparse


def add_commands(sub, common: argparse.ArgumentParser) -> None:
    """Add this module's subcommands to `sub`; each sets `run=<function(args) -> exit code>`
    with parents=[common] (--url, --token, --json)."""
