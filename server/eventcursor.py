"""Where an event stream stands in the Event table's id sequence (pure: no I/O).

Ids are handed out at insert but become visible at commit, and on PostgreSQL two writers
can commit out of order: id 10 is visible while id 9 is still in flight. A stream that
jumped past 9 would never send it. So the cursor moves in id order only, and waits at a
gap until the missing id appears or the gap is older than `grace` seconds (a rolled-back
insert leaves a gap for good). Then every id up to the cursor has been handled, and the
cursor is an exact resume point (`Last-Event-ID`).
"""
from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable, Iterable, Sequence

from hpcbridge.clock import aware, utcnow

GRACE_SECONDS = 10.0  # the store commits right after its insert: a gap this old is for good
START_WINDOW = 256  # ids behind the newest one a new stream checks for writes in flight


class EventCursor:
    """`after`: every event id <= after was sent, or was there before the stream opened,
    or is a gap given up after `grace`."""

    def __init__(self, after: int, grace: float = GRACE_SECONDS,
                 quiet: Iterable[int] = (), clock: Callable[[], float] = time.monotonic):
        self.after = after
        self.grace = grace
        self._quiet = set(quiet)  # ids above `after` the stream must not send
        self._clock = clock
        self._gap_since: float | None = None  # when the id after `after` was first missed

    def take(self, rows: Sequence[tuple]) -> list[tuple]:
        """Of one page of rows `(id, job id, user, time)` with id > after, oldest first:
        the rows to send now, in id order. The cursor moves to the last row taken, never
        past a young gap."""
        out = []
        for row in rows:
            if row[0] > self.after + 1 and not self._gap_given_up(row):
                break
            self.after, self._gap_since = row[0], None
            if row[0] in self._quiet:
                self._quiet.discard(row[0])
            else:
                out.append(row)
        return out

    def settle(self, rows: Sequence[tuple], upto: int) -> list[tuple]:
        """Of rows with ids up to `upto`, a range whose gaps another cursor (the process's
        event bus) has already waited for or given up: the rows to send now (not the quiet
        ones), in id order. The cursor moves to `upto`, never back."""
        out = [r for r in rows if self.after < r[0] <= upto and r[0] not in self._quiet]
        if upto > self.after:
            self.after, self._gap_since = upto, None
            self._quiet = {i for i in self._quiet if i > upto}
        return out

    def _gap_given_up(self, next_row: tuple) -> bool:
        """Whether the ids missing before `next_row` are gone for good: missed for
        `grace` seconds by this stream, or older than that by the time of the event
        written after them (so a client that reconnects often still gets past them)."""
        now = self._clock()
        if self._gap_since is None:
            self._gap_since = now
        if now - self._gap_since >= self.grace:
            return True
        written = next_row[3] if len(next_row) > 3 else None
        return written is not None and \
            utcnow() - aware(written) >= dt.timedelta(seconds=self.grace)


def start_cursor(newest: int, recent: Sequence[tuple[int, dt.datetime]],
                 grace: float = GRACE_SECONDS, now: dt.datetime | None = None,
                 clock: Callable[[], float] = time.monotonic) -> EventCursor:
    """A cursor for a stream of changes from now on: events already visible are not sent,
    but a write still in flight below the newest id (a gap among the events younger than
    `grace`) is, once it commits. `recent`: (id, time) of the ids in
    (newest - START_WINDOW, newest]."""
    now = now or utcnow()
    cutoff = now - dt.timedelta(seconds=grace)
    old = [i for i, t in recent if aware(t) <= cutoff]
    floor = max(old) if old else max(0, newest - START_WINDOW)
    present = {i for i, _ in recent}
    holes = [i for i in range(floor + 1, newest) if i not in present]
    if not holes:
        return EventCursor(newest, grace, clock=clock)
    after = holes[0] - 1
    return EventCursor(after, grace, quiet={i for i in present if i > after}, clock=clock)
