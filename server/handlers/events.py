"""The server-sent event stream of the caller's job changes.

One message per Event row of the caller's jobs, in the Event table's id order:
`event: job`, `id: <event id>`, `data: <the job as GET /jobs/{id} answers it>`. A client
that reconnects with `Last-Event-ID` (header, or `?last_event_id=` where a proxy drops
headers) gets every event after that id; see server/eventcursor.py for why no event is
skipped, even when PostgreSQL commits ids out of order.

New log text of the caller's running jobs comes as `event: log` (no `id:`),
`data: {"job_id", "stream": "stdout"|"stderr", "offset": <byte offset>, "size": <bytes>,
"text": <str|null>}`
(null: too long for a notice, read the range from /jobs/{id}/logs).

How the events reach the stream: pushed by the process's event bus (server/eventbus.py:
one Redis subscription and one query per process), or with c.EventBus.push = False read by
each stream every sse_interval seconds (the old way, kept as the benchmark's baseline).
"""
from __future__ import annotations

import asyncio
import json
import time

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry as AsyncRetry
from redis.backoff import NoBackoff
from tornado import iostream

from hpcbridge.errors import error_body

from .. import errors as E
from ..eventbus import (
    PAGE,
    REDIS_TIMEOUT,
    Bus,
    EventBus,
    Fanout,
    Subscriber,
    channel_of,
    install_publisher,
)
from ..eventcursor import START_WINDOW, EventCursor, start_cursor
from .base import APIHandler, job_info

KEEPALIVE_SECONDS = 15  # a comment line this often keeps proxies from closing a quiet stream

_buses: dict[int, tuple[object, Bus | None]] = {}  # id(ServerContext) → (it, its bus)


def job_message(row: tuple) -> str:
    """The `job` message of an event row (id, job id, user, time, job)."""
    return f"event: job\nid: {row[0]}\ndata: {job_info(row[4]).model_dump_json()}\n\n"


def event_bus(ctx) -> Bus | None:
    """The process's event bus, started on first use on the running loop (and with it the
    middleware's own notices); None when c.EventBus.push is False."""
    entry = _buses.get(id(ctx))
    if entry is not None and entry[0] is ctx:
        return entry[1]
    settings = EventBus(config=ctx.site.config)
    bus = None
    if settings.push:
        sync = ctx.queue.redis
        install_publisher(sync, ctx.site.queue_prefix, settings.publish_timeout)
        bus = Bus(Fanout(ctx.store, job_message, ctx.sse_grace), settings,
                  channel_of(ctx.site.queue_prefix), lambda: async_redis(ctx.site, sync),
                  ctx.stopping)
        bus.start()
    _buses[id(ctx)] = (ctx, bus)
    return bus


def async_redis(site, sync) -> aioredis.Redis:
    """An asyncio client to the site's Redis: its URL, or the embedded server's socket."""
    opts = {"socket_timeout": REDIS_TIMEOUT, "socket_connect_timeout": REDIS_TIMEOUT,
            "retry": AsyncRetry(NoBackoff(), 0),  # a lost subscription is the bus's to renew
            "client_name": f"hpcbridge-events:{site.queue_prefix}"}  # named in CLIENT LIST
    if site.redis_url:
        return aioredis.from_url(site.redis_url, **opts)
    return aioredis.Redis(unix_socket_path=sync.connection_pool.connection_kwargs["path"],
                          **opts)


class EventStreamHandler(APIHandler):
    """Server-sent events: one `job` message per event of the caller's jobs."""

    def set_default_headers(self):
        self.set_header("Content-Type", "text/event-stream")
        self.set_header("Cache-Control", "no-store")
        self.set_header("X-Accel-Buffering", "no")

    _slot: str | None = None
    _sub: Subscriber | None = None

    async def get(self):
        user = self.job_user_filter()
        cursor = self.open_cursor()
        self.ctx.stream_slots.take(self.user.name)  # 429 past the per-user bound
        self._slot = self.user.name
        self._closed = False
        bus = event_bus(self.ctx)
        self.write(": connected\n\n")
        if bus is None:
            await self.follow(cursor, user)
        else:
            await self.follow_pushed(bus.fanout, cursor, user)

    async def follow_pushed(self, fanout: Fanout, cursor: EventCursor,
                            user: str | None) -> None:
        """Write what the fan-out queues for this stream: first its backlog, page by page,
        then the process's rows of its user as they come."""
        stopping, interval = self.ctx.stopping, self.ctx.sse_interval
        sub = self._sub = fanout.open(user, cursor)
        last_write = checked = time.monotonic()
        try:
            while not self._closed and not stopping.is_set():
                now = time.monotonic()
                if now - checked >= interval:
                    if not await self.still_allowed():
                        return
                    checked = now
                if not sub.joined:
                    fanout.catch_up(sub)
                if sub.queue:
                    while sub.queue:
                        self.write(sub.queue.popleft())
                    last_write = now
                elif now - last_write >= KEEPALIVE_SECONDS:
                    # the id moves the client's resume point past other users' events too
                    self.write(f": keepalive\nid: {sub.cursor.after}\n\n")
                    last_write = now
                try:
                    await self.flush()
                except iostream.StreamClosedError:
                    return
                if not sub.joined:
                    continue  # the next page of its backlog at once
                wait = min(interval, KEEPALIVE_SECONDS - (now - last_write))
                try:
                    await asyncio.wait_for(sub.wake.wait(), max(0.01, wait))
                except asyncio.TimeoutError:
                    pass
                sub.wake.clear()
        finally:
            fanout.close(sub)
            self._sub = None

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
        if self._sub is not None:
            self._sub.wake.set()
        self.on_finish()  # the slot is free as soon as the client is gone
        super().on_connection_close()
