"""A maintainer worker process: a non-forking rq worker plus the poller, heartbeats and a
Redis watch, sharing one Runtime (event loop and SSH pools) for the life of the process.

Redis may go away and come back (restarted, possibly empty) while the worker runs: the work
loop waits for it and carries on, and the queues are refilled from the store, which is the
truth about every job (see RedisWatch)."""
from __future__ import annotations

import logging
import os
import signal
import threading
import time

from rq import SimpleWorker
from tenacity import Retrying, retry_if_exception_type, wait_exponential
from traitlets.config import Config

from hpcbridge import joblog
from hpcbridge.artifacts import check_at_start
from hpcbridge.config import Site
from hpcbridge.lifecycle import JobStatus

from . import claims
from . import runtime as R
from .liveness import heartbeat_loop
from .metrics import instrument_worker
from .notify import deliver_until_stopped
from .poller import Poller
from .runtime import REDIS_DOWN

log = logging.getLogger("hpcbridge.maintainer")

# rq blocks on its queues for worker_ttl - 15 s: 20 s, well within the Redis clients' read
# deadline (hpcbridge.config.REDIS_SOCKET_TIMEOUT), so an idle worker is never a timeout.
WORKER_TTL = 35
WATCH_SECONDS = 1.0  # how often the watch looks at Redis
RECONNECT_WAIT = (0.2, 2.0)  # back-off between tries to reach Redis: first, longest
# Jobs in staging or finishing are handed out again this long after Redis came back empty:
# by then every worker has written again the claims of the jobs it is still working on.
CLAIMED_REFILL_GRACE = 2 * RECONNECT_WAIT[1] + 2 * WATCH_SECONDS
RESTART_PAUSE = (1.0, 30.0)  # pause before rq's loop is started again: first, longest
# a worker that does not see the site's artifact store exits with this (EX_CONFIG): the
# pool stops instead of starting it again (maintainer/app.py Supervisor)
EXIT_WRONG_STORE = 78


def check_artifacts(site: Site, redis) -> bool:
    """hpcbridge.artifacts.check_at_start for a worker: SystemExit(EXIT_WRONG_STORE) when
    it does not see the site's store, which its pool does not restart."""
    return check_at_start(site.artifacts, redis, site.queue_prefix, log, EXIT_WRONG_STORE)


class _QuietOutage(logging.Filter):
    """rq logs every retry of a lost connection; the watch says it once per outage."""

    def filter(self, record: logging.LogRecord) -> bool:
        if "could not connect to Redis" in record.getMessage():
            return False
        exc = record.exc_info[1] if record.exc_info else None
        return not isinstance(exc, REDIS_DOWN)


class RedisWatch:
    """Notices Redis going away and coming back; writes this worker's claims again and,
    when Redis came back without its data (its epoch key is gone), refills the queues from
    the store: queued jobs at once, staging/finishing ones nobody claims after a grace."""

    def __init__(self, rt: R.Runtime, stop: threading.Event, parent_pid: int | None = None):
        self.rt, self.stop, self.parent_pid = rt, stop, parent_pid
        self.epoch_key = rt.key("epoch")
        self._lock = threading.Lock()
        self._down_since: float | None = None
        self._claimed_due: float | None = None
        self.artifacts_checked = False  # run_worker's check at start, or the next tick's

    def run(self) -> None:
        while not self.stop.wait(WATCH_SECONDS):
            if self.parent_pid and os.getppid() != self.parent_pid:
                log.warning("the maintainer that started this worker is gone: stopping")
                self.parent_pid = None
                os.kill(os.getpid(), signal.SIGTERM)
            try:
                self.tick()
            except REDIS_DOWN as exc:
                self.wait_until_up(exc, self.stop)
            except Exception:  # a store hiccup must not end the watch
                log.exception("Redis watch failed")

    def tick(self) -> None:
        claims.reassert(self.rt)
        epoch_lost = self.rt.redis.set(self.epoch_key, self.rt.worker_id, nx=True)
        if epoch_lost or not self.artifacts_checked:
            # Redis came back empty: the site's artifact id is recorded again, from a
            # store known to be right, before a newcomer can record its own
            try:
                self.artifacts_checked = check_artifacts(self.rt.site, self.rt.redis)
            except SystemExit:
                os.kill(os.getpid(), signal.SIGTERM)  # stop as a warm shutdown does
                return
        if epoch_lost:
            log.info("Redis holds no queues of ours: refilling them from the store")
            refill(self.rt, [JobStatus.QUEUED])
            self._claimed_due = time.monotonic() + CLAIMED_REFILL_GRACE
        if self._claimed_due is not None and time.monotonic() >= self._claimed_due:
            self._claimed_due = None
            refill(self.rt, [JobStatus.STAGING, JobStatus.FINISHING], unclaimed=True)

    def wait_until_up(self, why, stop: threading.Event) -> bool:
        """Wait (with back-off) until Redis answers; False if `stop` was set first. Says
        "waiting for Redis" once per outage, however many threads wait."""
        while not self._lock.acquire(timeout=0.2):  # another thread waits already
            if stop.is_set():
                return False
        try:
            if self._down_since is None:
                try:
                    self.rt.redis.ping()
                    return True
                except REDIS_DOWN as exc:
                    why = exc
                log.warning("waiting for Redis: %s", why)
                self._down_since = time.monotonic()
            try:
                for attempt in Retrying(
                        wait=wait_exponential(multiplier=RECONNECT_WAIT[0], max=RECONNECT_WAIT[1]),
                        retry=retry_if_exception_type(REDIS_DOWN), sleep=stop.wait,
                        stop=lambda _state: stop.is_set(), reraise=True):
                    with attempt:
                        self.rt.redis.ping()
            except REDIS_DOWN:
                return False
            log.warning("Redis is back after %.1f s", time.monotonic() - self._down_since)
            self._down_since = None
            return True
        finally:
            self._lock.release()


def refill(rt: R.Runtime, steps, unclaimed: bool = False) -> int:
    """Hand every job of this worker's HPCs in `steps` to the pool again (tasks are
    idempotent; a claim decides who works on a job); with `unclaimed`, only jobs nobody
    holds a claim on. How many were handed over."""
    count = 0
    for hpc_id in rt.hpcs:
        for job in rt.store.active_jobs(hpc_id, steps):
            if unclaimed and rt.redis.exists(claims.claim_key(rt, job.id)):
                continue
            rt.enqueue_advance(job.id, hpc_id)
            count += 1
    if count:
        log.info("handed %d jobs (%s) to the pool again", count, ", ".join(steps))
    return count


class _Worker(SimpleWorker):
    """rq's worker, remembering whether it was asked to stop or lost Redis."""

    stop_requested = False
    lost_redis: BaseException | None = None
    leaving = False  # its pubsub is being closed: what its thread then raises is expected

    def subscribe(self):
        """rq's pubsub thread, waking every second (rq's 60 s outlast its own stop)."""
        self.pubsub = self.connection.pubsub()
        self.pubsub.subscribe(**{self.pubsub_channel_name: self.handle_payload})
        self.pubsub_thread = self.pubsub.run_in_thread(
            sleep_time=1, daemon=True, exception_handler=self._pubsub_exception_handler)

    def unsubscribe(self):
        self.leaving = True
        super().unsubscribe()

    def _pubsub_exception_handler(self, exc, pubsub, thread):
        if self.leaving:
            return
        if isinstance(exc, REDIS_DOWN):  # the watch reports the outage; try again soon
            time.sleep(1)
            return
        super()._pubsub_exception_handler(exc, pubsub, thread)

    def request_stop(self, signum, frame):
        self.stop_requested = True
        super().request_stop(signum, frame)

    def execute_job(self, job, queue):
        try:
            super().execute_job(job, queue)
        except REDIS_DOWN as exc:  # rq's bookkeeping around the task: wait, then go on
            self.lost_redis = exc
            raise


class _Signals:
    """SIGTERM, SIGINT and SIGHUP stop the worker: rq's warm shutdown while it works (the
    task in hand ends first), at once between two runs of rq's loop."""

    def __init__(self):
        self.stopped = threading.Event()
        self.worker: _Worker | None = None

    def install(self) -> None:
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(sig, self)

    def __call__(self, signum, frame):
        self.stopped.set()
        if self.worker is not None:
            self.worker.request_stop(signum, frame)


def _discard(worker: _Worker) -> None:
    """Stop what a run of rq's loop may leave running: its pubsub thread (rq's teardown
    does not get that far when Redis is gone)."""
    thread = getattr(worker, "pubsub_thread", None)
    if thread is None:
        return
    worker.leaving = True
    thread.stop()
    thread.join(3)
    try:
        worker.pubsub.close()
    except Exception:  # already closed, or Redis is gone: nothing left to release
        pass
    worker.pubsub_thread = None


def work_until_stopped(rt: R.Runtime, watch: RedisWatch, burst: bool) -> None:
    """rq's work loop, started again whenever it ends on a Redis outage (or by itself)
    rather than on a stop request or, with burst, empty queues."""
    signals = _Signals()
    signals.install()
    pause, runs = RESTART_PAUSE[0], 0
    while not signals.stopped.is_set():
        name = rt.worker_id if runs == 0 else f"{rt.worker_id}.{runs}"  # rq's old entry may live
        worker = _Worker([rt.queue(h) for h in rt.hpcs], connection=rt.redis, name=name,
                         worker_ttl=WORKER_TTL)
        worker.max_connection_wait_time = RECONNECT_WAIT[1]
        signals.worker, started, error = worker, time.monotonic(), None
        try:
            worker.work(burst=burst, logging_level="WARNING", with_scheduler=False)
            error = worker.lost_redis
        except REDIS_DOWN as exc:
            error = exc
        finally:
            signals.worker = None
            signals.install()  # rq's handlers end with its loop
            if error is not None:
                _discard(worker)
        if signals.stopped.is_set() or worker.stop_requested or (burst and error is None):
            return
        runs += 1
        if error is None:
            log.warning("rq's work loop ended by itself: starting it again")
        if not watch.wait_until_up(error or "work loop ended", signals.stopped):
            return
        # a loop that keeps ending at once is restarted ever more slowly
        pause = RESTART_PAUSE[0] if time.monotonic() - started > 60 else \
            min(pause * 2, RESTART_PAUSE[1])
        if error is None and signals.stopped.wait(pause):
            return


def run_worker(config: Config | None = None, burst: bool = False,
               parent_pid: int | None = None) -> None:
    """Run one worker until SIGTERM/SIGINT/SIGHUP or, with burst, idle; `parent_pid`: the
    supervising maintainer (the worker stops when it is gone)."""
    joblog.configure(joblog.log_format_of(config or Config()))
    for noisy in ("alembic", "asyncssh", "rq"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    for name in ("rq.worker", "hpcbridge.maintainer"):  # the poller's failed cycles too
        logging.getLogger(name).addFilter(_QuietOutage())
    rt = R.Runtime(Site(config=config or Config()))
    try:
        checked = check_artifacts(rt.site, rt.redis)
    except SystemExit:
        rt.close()
        raise
    joblog.set_worker(rt.worker_id)
    R.install(rt)
    stop = threading.Event()
    poller = Poller(rt, stop)
    watch = RedisWatch(rt, stop, parent_pid)
    watch.artifacts_checked = checked
    instrument_worker(rt, poller)
    threads = [
        threading.Thread(target=deliver_until_stopped, args=(rt, stop),
                         name="hpcbridge-notify", daemon=True),
        threading.Thread(target=poller.run, name="hpcbridge-poller", daemon=True),
        threading.Thread(target=heartbeat_loop, args=(rt, lambda: poller.leases, stop),
                         name="hpcbridge-heartbeat", daemon=True),
        threading.Thread(target=watch.run, name="hpcbridge-redis-watch", daemon=True),
    ]
    for t in threads:
        t.start()
    log.info("worker %s serves %s", rt.worker_id, ", ".join(rt.hpcs))
    try:
        work_until_stopped(rt, watch, burst)
    finally:
        stop.set()
        for t in threads:
            t.join(10)
        try:
            rt.store.remove_worker(rt.worker_id)
        except Exception:  # the database may be gone at shutdown: the heartbeat expires
            pass
        rt.close()
        R.install(None)
