"""What every CLI command shares: a client, and errors printed the one way."""
from __future__ import annotations

import json
import sys
from collections.abc import Callable

from ..errors import HPCBridgeError


def with_client(args, action: Callable) -> int:
    """Run action(client) and return its exit code; an API error is printed (as JSON with
    --json) and exits 2, a wait that timed out 1, Ctrl-C 130."""
    from ..client import Client
    try:
        with Client(getattr(args, "url", None), getattr(args, "token", None)) as client:
            return action(client)
    except HPCBridgeError as exc:
        print_error(exc, getattr(args, "json", False))
        return 2
    except TimeoutError as exc:
        print(f"hpcbridge: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


def print_error(exc: HPCBridgeError, as_json: bool) -> None:
    if as_json:
        print(json.dumps({"error": exc.code or type(exc).__name__, "message": exc.message,
                          "details": exc.details}), file=sys.stderr)
        return
    print(f"hpcbridge: {exc.message}", file=sys.stderr)
    for detail in exc.details:
        loc = ".".join(str(p) for p in detail.get("loc", []))
        print(f"  {loc}: {detail.get('msg')}", file=sys.stderr)
