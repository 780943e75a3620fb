"""How the SDK follows a job (pure, no HTTP): reading the middleware's event stream, and
showing the job's stage as a progress bar over the lifecycle's steps."""
from __future__ import annotations

from collections.abc import Iterable, Iterator

from .lifecycle import FINAL, STEPS


def sse_events(lines: Iterable[str]) -> Iterator[tuple[str, str]]:
    """A server-sent event stream, one item per line read: ("connected", "") when the
    middleware says the stream is open, ("data", text) when an event is complete, and
    ("", "") for any other line (a moment for the caller to look at the clock). A blank
    line that ends a message with an `id:` also yields ("id", id) after it: the point to
    resume from (Last-Event-ID), taken only once the whole message arrived."""
    data: list[str] = []
    event_id: str | None = None
    for line in lines:
        if line.startswith(": connected"):
            yield "connected", ""
        elif line.startswith("data:"):
            data.append(_value(line))
            yield "", ""
        elif line.startswith("id:") and "\0" not in line:
            event_id = _value(line)
            yield "", ""
        elif not line and (data or event_id is not None):
            if data:
                yield "data", "\n".join(data)
            if event_id is not None:
                yield "id", event_id
            data, event_id = [], None
        else:  # other comments (keepalives), event: lines
            yield "", ""


def _value(line: str) -> str:
    """A field's value: after the colon, without the one space that may follow it."""
    value = line.split(":", 1)[1]
    return value[1:] if value.startswith(" ") else value


class ProgressBar:
    """A job's stage as a bar: one step per active status, full once the job ended."""

    def __init__(self, status: str, enabled: bool = True):
        from tqdm.auto import tqdm  # only when waiting: importing it costs
        self._bar = tqdm(total=len(STEPS), desc=str(status), disable=not enabled,
                         bar_format="{desc:<10} {bar} {n}/{total} [{elapsed}]{postfix}")

    def show(self, status: str, message: str | None) -> None:
        self._bar.n = len(STEPS) if status in FINAL else STEPS.index(status)
        self._bar.set_description_str(str(status))
        self._bar.set_postfix_str((message or "")[:60])

    def close(self) -> None:
        self._bar.close()
