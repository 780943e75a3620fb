"""Events pushed to the event streams: one Redis subscription and one query per process.

Writers (the store, in the middleware and in every maintainer worker) publish a small
notice on Redis pub/sub after each commit that wrote events (`Publisher`, a Store event
hook): `{"kind": "events", "events": [[event id, job id, user], ...]}`, or after new log
text, `{"kind": "log", "job_id", "user", "stream", "offset", "size", "text"}`.

Each middleware process holds one subscription (`EventBus`) and one `Fanout` of its open
streams. A notice of events makes one query for the whole process (events after the
process-wide cursor, which follows server/eventcursor.py's rules, so ids that PostgreSQL
commits out of order are not skipped); each stream gets the rows of its user (admin with
?all=1: all). Without notices (Redis down, a notice lost, a writer without a publisher)
the process reads every `fallback_interval` seconds anyway. A new stream, or one resumed
with Last-Event-ID, reads its backlog from the database itself, page by page, up to the
process-wide cursor, and then joins the fan-out: the join happens between two queries of
the bus (both run on the IOLoop, without awaiting in between), so nothing falls between.
"""
from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import defaultdict, deque
from collections.abc import Callable, Sequence

import redis
import redis.asyncio as aioredis
from redis.backoff import NoBackoff
from redis.retry import Retry
from traitlets import Bool, Float
from traitlets.config import Configurable

from .eventcursor import START_WINDOW, EventCursor, start_cursor
from .store import Store

log = logging.getLogger("hpcbridge.server.events")

PAGE = 500  # events read per query; a full page is followed at once by the next
MAX_QUEUED = 2000  # messages waiting for one slow client before it reads from the DB again
PING_EVERY = 15.0  # seconds between liveness pings on a quiet subscription
REDIS_TIMEOUT = 5.0  # subscribe, ping answer, connect


def channel_of(prefix: str) -> str:
    """The pub/sub channel of a site (its Redis key prefix: test runs do not mix)."""
    return f"{prefix}:events"


class EventBus(Configurable):
    """How event streams learn of new events (c.EventBus.*)."""

    push = Bool(True, help="Push events to the streams from one Redis subscription and one "
                "query per process; False: every stream reads the database every "
                "HPCBridgeServer.sse_interval seconds (the old way, kept as a baseline)."
                ).tag(config=True)
    fallback_interval = Float(5.0, help="Seconds between two reads of new events when no "
                              "notice came (notices lost, Redis down).").tag(config=True)
    min_interval = Float(0.05, help="Seconds at least between two reads for notices: a "
                         "burst of notices costs one query.").tag(config=True)
    publish_timeout = Float(0.5, help="Seconds a writer waits for Redis to take a notice; "
                            "past it the notice is dropped (the fallback read covers it)."
                            ).tag(config=True)


# --- publishing (sync: the store is) --------------------------------------------------------
class Publisher:
    """A Store event hook: the notice, as JSON, on the site's channel. Never raises; after a
    failure it stays quiet for `retry_after` seconds (a dead Redis does not cost every
    transition a timeout) and says so once per outage."""

    def __init__(self, client: redis.Redis, channel: str, retry_after: float = 5.0):
        self.client, self.channel, self.retry_after = client, channel, retry_after
        self._quiet_until = 0.0
        self._down = False
        self.published = self.dropped = 0

    def __call__(self, notice: dict) -> None:
        if time.monotonic() < self._quiet_until:
            self.dropped += 1
            return
        try:
            self.client.publish(self.channel, json.dumps(notice, separators=(",", ":")))
        except (redis.RedisError, OSError) as exc:
            self.dropped += 1
            self._quiet_until = time.monotonic() + self.retry_after
            if not self._down:
                log.warning("event notices not published (%s: %s): streams fall back to "
                            "reading every few seconds", type(exc).__name__, exc)
            self._down = True
            return
        self.published += 1
        if self._down:
            log.info("event notices published again")
            self._down = False


def quick_client(client: redis.Redis, timeout: float) -> redis.Redis:
    """A client to the same Redis as `client` (URL or the embedded server's socket) whose
    every call gives up after `timeout` seconds, without retries."""
    pool = client.connection_pool
    kwargs = {**pool.connection_kwargs, "socket_timeout": timeout,
              "socket_connect_timeout": timeout}
    kwargs["retry"] = Retry(NoBackoff(), 0)
    return redis.Redis(connection_pool=redis.ConnectionPool(
        connection_class=pool.connection_class, **kwargs))


def install_publisher(client: redis.Redis, prefix: str, timeout: float) -> Publisher:
    """Publish this process's event notices on `prefix`'s channel, through `client`'s
    Redis: one publisher per channel, the newest replaces an older one."""
    channel = channel_of(prefix)
    publisher = Publisher(quick_client(client, timeout), channel)
    Store.event_hooks[:] = [h for h in Store.event_hooks
                            if not (isinstance(h, Publisher) and h.channel == channel)]
    Store.event_hooks.append(publisher)
    return publisher


def remove_publisher(publisher: Publisher) -> None:
    if publisher in Store.event_hooks:
        Store.event_hooks.remove(publisher)
    publisher.client.close()


# --- the fan-out (sync, on the IOLoop) ------------------------------------------------------
class Subscriber:
    """One open stream. `cursor.after` is its resume point once its queue is written;
    `joined`: it gets the process's rows (else it still reads its own backlog)."""

    def __init__(self, user: str | None, cursor: EventCursor):
        self.user, self.cursor = user, cursor
        self.queue: deque[str] = deque()
        self.wake = asyncio.Event()
        self.joined = False

    def push(self, message: str) -> None:
        self.queue.append(message)
        self.wake.set()


class Fanout:
    """The open streams of a process and the process-wide cursor. `format(row)`: the
    message of an event row `(id, job id, user, time, job)`."""

    def __init__(self, store: Store, format: Callable[[tuple], str], grace: float):
        self.store, self.format, self.grace = store, format, grace
        self.streams: set[Subscriber] = set()
        self.cursor: EventCursor | None = None  # None: not following (no stream joined)
        self.queries = 0

    # streams come and go
    def open(self, user: str | None, cursor: EventCursor) -> Subscriber:
        sub = Subscriber(user, cursor)
        self.streams.add(sub)
        return sub

    def close(self, sub: Subscriber) -> None:
        self.streams.discard(sub)
        if not any(s.joined for s in self.streams):
            self.cursor = None  # nobody needs it: the next join starts it at the end anew

    def joined(self) -> list[Subscriber]:
        return [s for s in self.streams if s.joined]

    def _start(self) -> EventCursor:
        """The process-wide cursor at the end of the table, below writes still in flight
        (without start_cursor's quiet ids: a stream's own cursor drops what it must)."""
        newest = self.store.last_event_id()
        recent = self.store.events_after(max(0, newest - START_WINDOW), START_WINDOW,
                                          upto=newest)
        self.queries += 2
        start = start_cursor(newest, [(r[0], r[3]) for r in recent], self.grace)
        return EventCursor(start.after, self.grace)

    def catch_up(self, sub: Subscriber) -> bool:
        """One page of `sub`'s backlog, up to the process-wide cursor; True once `sub` has
        joined (its next rows come from refresh)."""
        if self.cursor is None:
            self.cursor = self._start()
        target = self.cursor.after
        if sub.cursor.after < target:
            rows = self.store.events_with_jobs_after(sub.cursor.after, PAGE, upto=target)
            self.queries += 1
            if len(rows) == PAGE:  # more to read: settled up to this page's end only
                target = rows[-1][0]
            for row in sub.cursor.settle(self._of(sub, rows), target):
                sub.push(self.format(row))
            if target < self.cursor.after:
                return False
        sub.joined = True
        return True

    def refresh(self) -> bool:
        """One query for every joined stream: each gets its user's new rows. Whether a full
        page went through (more may be waiting)."""
        streams = self.joined()
        if not streams or self.cursor is None:
            return False
        rows = self.store.events_with_jobs_after(self.cursor.after, PAGE)
        self.queries += 1
        taken = self.cursor.take(rows)
        by_user: dict[str, list] = defaultdict(list)
        for row in taken:
            by_user[row[2]].append(row)
        messages: dict[int, str] = {}  # formatted once, whatever the number of streams
        for sub in streams:
            mine = taken if sub.user is None else by_user.get(sub.user, ())
            for row in sub.cursor.settle(mine, self.cursor.after):
                if row[0] not in messages:
                    messages[row[0]] = self.format(row)
                sub.push(messages[row[0]])
            if len(sub.queue) > MAX_QUEUED:  # a slow reader: it reads its backlog itself
                sub.joined = False
        return len(rows) == PAGE and len(taken) == len(rows)

    def log_notice(self, notice: dict) -> None:
        """New log text of a job: `event: log` to the streams of its user (no id: it is
        not an event row and moves no resume point)."""
        data = json.dumps({"job_id": notice["job_id"], "stream": notice["stream"],
                           "offset": notice["offset"], "size": notice.get("size"),
                           "text": notice.get("text")})
        message = f"event: log\ndata: {data}\n\n"
        for sub in self.streams:
            if sub.user is None or sub.user == notice.get("user"):
                sub.push(message)

    def seen(self, event_ids: Sequence[int]) -> bool:
        """Whether every id of a notice is at or below the process-wide cursor already."""
        return self.cursor is not None and bool(event_ids) and \
            max(event_ids) <= self.cursor.after

    def wake_all(self) -> None:
        for sub in self.streams:
            sub.wake.set()

    @staticmethod
    def _of(sub: Subscriber, rows: Sequence[tuple]) -> list[tuple]:
        return list(rows) if sub.user is None else [r for r in rows if r[2] == sub.user]


# --- the subscription (async, one per middleware process) -----------------------------------
class Bus:
    """The process's subscription and its refresh loop around a Fanout.

    `subscribe`: an async redis client factory; `stopping`: the server's stop event."""

    def __init__(self, fanout: Fanout, settings: EventBus, channel: str,
                 connect: Callable[[], aioredis.Redis], stopping: asyncio.Event):
        self.fanout, self.settings, self.channel = fanout, settings, channel
        self.connect, self.stopping = connect, stopping
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task] = []
        self.subscribed = False
        self.subscriptions = 0  # successful subscribes (1, then one per reconnect)
        self.notices = 0
        self.fallbacks = 0

    def start(self) -> None:
        self._tasks = [asyncio.ensure_future(self._listen()),
                       asyncio.ensure_future(self._refresh_loop()),
                       asyncio.ensure_future(self._end_streams_at_stop())]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def request_refresh(self) -> None:
        self._wake.set()

    def on_message(self, raw: bytes | str) -> None:
        try:
            notice = json.loads(raw)
            kind = notice["kind"]
        except (ValueError, KeyError, TypeError):
            log.warning("an event notice that is not one: %.200r", raw)
            return
        self.notices += 1
        if kind == "log":
            self.fanout.log_notice(notice)
        elif kind == "events":
            ids = [e[0] for e in notice.get("events", ()) if e and isinstance(e[0], int)]
            if not self.fanout.seen(ids):
                self.request_refresh()

    async def _listen(self) -> None:
        """Hold the subscription: reconnect (0.5 s doubling to 5 s) when it drops or stops
        answering pings; after each (re)subscribe one read covers notices missed meanwhile."""
        backoff = 0.5
        while not self.stopping.is_set():
            client = self.connect()
            pubsub = client.pubsub()
            try:
                await asyncio.wait_for(pubsub.subscribe(self.channel), REDIS_TIMEOUT)
                if self.subscriptions:  # as loud as the loss it ends
                    log.warning("event bus subscribed again to %s", self.channel)
                else:
                    log.info("event bus subscribed to %s", self.channel)
                self.subscribed, backoff = True, 0.5
                self.subscriptions += 1
                self.request_refresh()
                await self._read(pubsub)
            except asyncio.CancelledError:
                raise
            except (redis.RedisError, OSError, asyncio.TimeoutError, ConnectionError) as exc:
                if self.subscribed or not self.subscriptions:
                    log.warning("event bus subscription lost (%s: %s): reading every %.0f s "
                                "until it is back", type(exc).__name__, exc,
                                self.settings.fallback_interval)
            finally:
                self.subscribed = False
                await _close_quietly(pubsub, client)
            try:
                await asyncio.wait_for(self.stopping.wait(), backoff)
            except asyncio.TimeoutError:
                pass
            backoff = min(5.0, backoff * 2)

    async def _read(self, pubsub) -> None:
        pinged = None  # when a ping went unanswered so far
        last_heard = time.monotonic()
        while not self.stopping.is_set():
            message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
            now = time.monotonic()
            if message is not None:
                last_heard, pinged = now, None
                if message.get("type") == "message":
                    self.on_message(message["data"])
                continue
            if pinged is not None and now - pinged > REDIS_TIMEOUT:
                raise asyncio.TimeoutError("no answer to a ping")
            if pinged is None and now - last_heard > PING_EVERY:
                pinged = now
                await asyncio.wait_for(pubsub.ping(), REDIS_TIMEOUT)

    async def _refresh_loop(self) -> None:
        """A read per notice burst (at most one per min_interval), and one per
        fallback_interval without notices. The reads run on the IOLoop like the joins."""
        while not self.stopping.is_set():
            try:
                await asyncio.wait_for(self._wake.wait(), self.settings.fallback_interval)
            except asyncio.TimeoutError:
                self.fallbacks += 1
            self._wake.clear()
            try:
                more, pages = True, 0
                while more and pages < 20:  # 10,000 rows, then let the streams write
                    more = self.fanout.refresh()
                    pages += 1
                if more:
                    self._wake.set()
            except Exception:  # the database is down or slow: the next read tries again
                log.exception("reading new events failed")
            await asyncio.sleep(self.settings.min_interval)

    async def _end_streams_at_stop(self) -> None:
        await self.stopping.wait()
        self.fanout.wake_all()  # each stream sees the stop at once
        self._wake.set()


async def _close_quietly(pubsub, client) -> None:
    for close in (pubsub.aclose, client.aclose):
        try:
            await asyncio.wait_for(close(), REDIS_TIMEOUT)
        except Exception as exc:  # closing what is already broken
            log.debug("closing the subscription: %s", exc)
