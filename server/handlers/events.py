"""The server-sent event stream of the caller's job changes.

One message per Event row of the caller's jobs, in the Event table's id order:
`event: job`, `id: <event id>`, `data: <the job as GET /jobs/{id} answers it>`. A client
that reconnects with `Last-Event-ID` (header, or `?last_event_id=` where a proxy drops
headers) gets every event after that id; see server/eventcursor.py for why no event is
skipped, even when PostgreSQL commits ids out of order.
"""
from __future__ import annotations

import asyncio
import json

from tornado import iostream

from hpcbridge.errors import error_body

from .. import errors as E
from ..eventcursor import START_WINDOW, EventCursor, start_cursor
from .base import APIHandler, job_info

KEEPALIVE_SECONDS = 15  # a comment line this often keeps proxies from closing a quiet stream
PAGE = 500  # events read per query; a full page is followed at once by the next


class EventStreamHandler(APIHandler):
    """Server-sent events: one `job` message per event of the caller's jobs."""

    def set_default_headers(self):
        self.set_header("Content-Type", "text/event-stream")
        self.set_header("Cache-Control", "no-store")
        self.set_header("X-Accel-Buffering", "no")

    _slot: str | None = None

    async def get(self):
        user = self.job_user_filter()
        cursor = self.open_cursor()
        self.ctx.stream_slots.take(self.user.name)  # 429 past the per-user bound
        self._slot = self.user.name
        self._closed = False
        self.write(": connected\n\n")
        await self.follow(cursor, user)

    async def follow(self, cursor: EventCursor, user: str | None) -> None:
        stopping = self.ctx.stopping
        quiet = 0.0
        while not self._closed and not stopping.is_set() and await self.still_allowed():
            sent, more = self.send_page(cursor, user)
            quiet = 0.0 if sent else quiet + (0 if more else self.ctx.sse_interval)
            if quiet >= KEEPALIVE_SECONDS:
                # the id moves the client's resume point past other users' events too
                self.write(f": keepalive\nid: {cursor.after}\n\n")
                quiet = 0.0
            try:
                await self.flush()
            except iostream.StreamClosedError:
                return
            if not more:
                try:
                    await asyncio.wait_for(stopping.wait(), self.ctx.sse_interval)
                except asyncio.TimeoutError:
                    pass

    async def still_allowed(self) -> bool:
        """The stream's token, checked again through the cache: a token revoked (or
        stripped of its access) ends the stream within the cache's TTL."""
        try:
            await self.ctx.authenticator.authenticate(self.token())
            return True
        except E.APIError as exc:
            self.write(f"event: error\ndata: {json.dumps(error_body(exc.code, exc.message))}"
                       "\n\n")
            return False

    def on_finish(self):
        if self._slot is not None:
            self.ctx.stream_slots.give(self._slot)
            self._slot = None

    def open_cursor(self) -> EventCursor:
        store, grace = self.ctx.store, self.ctx.sse_grace
        newest = store.last_event_id()
        last = self.last_event_id()
        if last is not None and last <= newest:
            return EventCursor(last, grace)  # every id <= last was handled before
        recent = store.events_after(max(0, newest - START_WINDOW), START_WINDOW, upto=newest)
        return start_cursor(newest, [(r[0], r[3]) for r in recent], grace)

    def last_event_id(self) -> int | None:
        raw = self.request.headers.get("Last-Event-ID") or \
            self.get_query_argument("last_event_id", None)
        if raw is None or raw.strip() == "":
            return None
        try:
            value = int(raw.strip())
        except ValueError:
            value = -1
        if value < 0:
            raise E.ValidationFailed(
                "Last-Event-ID must be the id of an event (an integer >= 0)",
                [{"loc": ["header", "Last-Event-ID"], "msg": "an integer >= 0"}])
        return value

    def send_page(self, cursor: EventCursor, user: str | None) -> tuple[int, bool]:
        """Write the events the cursor lets through: (messages written, whether a full
        page went through, so more may be waiting)."""
        rows = self.ctx.store.events_after(cursor.after, PAGE)
        taken = cursor.take(rows)
        mine = [r for r in taken if user is None or r[2] == user]
        jobs = self.ctx.store.get_jobs(r[1] for r in mine)
        for event_id, job_id, *_ in mine:
            self.write(f"event: job\nid: {event_id}\n"
                       f"data: {job_info(jobs[job_id]).model_dump_json()}\n\n")
        return len(mine), len(rows) == PAGE and len(taken) == len(rows)

    def on_connection_close(self):
        self._closed = True
        self.on_finish()  # the slot is free as soon as the client is gone
        super().on_connection_close()
