"""A bounded, self-healing pool of asyncssh connections to one HPC.

A few connections, each carrying at most `channels_per_connection` channels (below sshd's
MaxSessions of 10), handed out as slot tokens from one queue; port forwards (open_tunnel)
ride them too. A refused channel is retried on the same connection. One reconnect at a
time per connection, with backoff and jitter (tenacity); after the retry budget:
`HPCUnavailable`, at once for a short while to the callers queued behind it.
"""
from __future__ import annotations

import asyncio
import contextlib
import os
import random
import shlex
import time
from collections.abc import Sequence

import asyncssh
from tenacity import (
    AsyncRetrying,
    retry_if_exception_type,
    stop_after_attempt,
    wait_exponential_jitter,
)

from .config import HPCConfig
from .deadline import within
from .errors import (
    AuthenticationFailed,
    CommandInterrupted,
    ConnectorError,
    HostKeyError,
    HPCUnavailable,
    RemoteTimeout,
    classify,
)
from .sftp import SFTPFiles
from .transport import CommandCounter, CommandResult

# Errors that mean "the connection went away". Not every OSError: a local file that is
# missing during an upload must not be taken for a lost connection (and close it).
_LOST = (asyncssh.ConnectionLost, asyncssh.DisconnectError, ConnectionError,
         asyncssh.SFTPConnectionLost, asyncssh.SFTPNoConnection)


def _lost(conn, exc: BaseException) -> bool:
    return isinstance(exc, _LOST) or conn.is_closed()


# sshd refuses a channel ("open failed") on a connection that has MaxSessions (10) open, and
# it frees a closed channel's session only on a later turn of its loop: under a burst a new
# channel is refused now and then although fewer than `channels_per_connection` are open
# (seen here at 8). The command never started, so it waits a moment and tries again — on
# the same connection, which is fine: closing it would interrupt every command it carries.
_OPEN_ATTEMPTS = 8


def _refusal_pause(attempt: int) -> float:
    return min(0.5, 0.01 * 2 ** attempt) * (0.5 + random.random())


# After a reconnect spent its retry budget, callers queued behind it fail at once for a
# while instead of each spending it again: a poll round against a dead login node ends in
# seconds. The pause doubles with each failed reconnect in a row (up to 15 s: a login node
# that is back is seen soon; one that hangs is not tried every few seconds).
_DOWN_COOLDOWN = 2.0
_DOWN_COOLDOWN_MAX = 15.0


def _down_pause(failures: int) -> float:
    return min(_DOWN_COOLDOWN_MAX, _DOWN_COOLDOWN * 2 ** max(0, failures - 1))


class _RateLimiter:
    """At most `per_minute` commands in any 60 s window, spread evenly (a token bucket)."""

    def __init__(self, per_minute: int):
        self.rate = per_minute / 60.0
        self.capacity = max(1.0, per_minute / 6.0)  # bursts of up to 10 s worth
        self.tokens = self.capacity
        self.stamp = time.monotonic()
        self.lock = asyncio.Lock()

    async def acquire(self) -> None:
        async with self.lock:
            while True:
                now = time.monotonic()
                self.tokens = min(self.capacity, self.tokens + (now - self.stamp) * self.rate)
                self.stamp = now
                if self.tokens >= 1:
                    self.tokens -= 1
                    return
                await asyncio.sleep((1 - self.tokens) / self.rate)


TUNNELS_PER_CONNECTION = 64  # forwarded connections (open_tunnel) per SSH connection


class TunnelRefused(ConnectorError):
    """Nothing accepts the forwarded connection there (yet), or sshd forbids it."""


class Tunnel:
    """A forwarded connection: `reader`/`writer` (asyncssh streams); close() frees it."""

    def __init__(self, pool, index: int, reader, writer):
        self.pool, self.index, self.reader, self.writer = pool, index, reader, writer
        self._open = True

    def close(self) -> None:
        if self._open:
            self._open = False
            self.pool._tunnel_closed(self.index)
            with contextlib.suppress(Exception):
                self.writer.close()


class ConnectorPool(SFTPFiles):
    """SSH commands and SFTP to one HPC through a bounded set of connections (the file
    methods are in sftp.py)."""

    def __init__(self, config: HPCConfig):
        self.config = config
        self.commands = CommandCounter()
        self.connections_opened = 0
        self.work_root = config.work_root
        self._conns: list[asyncssh.SSHClientConnection | None] = [None] * config.connections
        self._locks = [asyncio.Lock() for _ in range(config.connections)]
        self._slots: asyncio.Queue[int] = asyncio.Queue()
        # interleave tokens so that load spreads over the connections
        for _ in range(config.channels_per_connection):
            for index in range(config.connections):
                self._slots.put_nowait(index)
        self._down: list[tuple[float, str] | None] = [None] * config.connections
        self._failures = [0] * config.connections  # failed reconnects in a row
        self._limiter = _RateLimiter(config.commands_per_minute)
        #: channels sshd refused and that were retried (see _OPEN_ATTEMPTS)
        self.channel_refusals = 0
        self._closed = False
        # port forwards ride the same connections on a budget of their own: MaxSessions
        # does not count them, and a WebSocket must not hold a command channel for hours
        self.tunnels_open = [0] * config.connections
        self._tunnel_budget = asyncio.Semaphore(config.connections * TUNNELS_PER_CONNECTION)

    # --- connections ----------------------------------------------------------------
    def _describe(self) -> str:
        return f"{self.config.user}@{self.config.host}:{self.config.port}"

    async def _open(self) -> asyncssh.SSHClientConnection:
        cfg = self.config
        if cfg.key_file and not os.path.exists(cfg.key_file):
            raise AuthenticationFailed(f"key file {cfg.key_file} for {cfg.id} does not exist")
        try:
            client_keys = [asyncssh.read_private_key(cfg.key_file)] if cfg.key_file else None
        except (asyncssh.KeyImportError, OSError) as exc:
            raise AuthenticationFailed(f"key file {cfg.key_file} for {cfg.id}: {exc}") from exc
        try:
            conn = await within(asyncssh.connect(
                cfg.host, port=cfg.port, username=cfg.user or None,
                client_keys=client_keys, known_hosts=cfg.known_hosts or (),
                connect_timeout=cfg.connect_timeout, keepalive_interval=cfg.keepalive_interval,
                keepalive_count_max=3, agent_path=None, password=None,
                preferred_auth="publickey", config=None),
                cfg.connect_timeout + 1, f"{cfg.id}: connect")  # a backstop to asyncssh's
        except asyncssh.HostKeyNotVerifiable as exc:
            raise HostKeyError(
                f"host key of {cfg.host}:{cfg.port} ({cfg.id}) is not in known_hosts "
                f"{cfg.known_hosts or '(none configured)'} or has changed: refused") from exc
        except asyncssh.PermissionDenied as exc:
            raise AuthenticationFailed(
                f"{self._describe()} refused the key {cfg.key_file}: {exc.reason}") from exc
        self.connections_opened += 1
        return conn

    async def _connection(self, index: int) -> asyncssh.SSHClientConnection:
        conn = self._conns[index]
        if conn is not None and not conn.is_closed():
            return conn
        async with self._locks[index]:  # one reconnect at a time per connection
            conn = self._conns[index]
            if conn is not None and not conn.is_closed():
                return conn
            down = self._down[index]
            if down is not None and time.monotonic() < down[0]:
                raise HPCUnavailable(down[1])
            try:
                async for attempt in AsyncRetrying(
                        stop=stop_after_attempt(self.config.connect_retries),
                        wait=wait_exponential_jitter(multiplier=0.2, max=5, jitter=0.5),
                        retry=retry_if_exception_type((OSError, asyncio.TimeoutError,
                                                       RemoteTimeout, asyncssh.DisconnectError)),
                        reraise=True):
                    with attempt:
                        conn = await self._open()
            except (OSError, asyncio.TimeoutError, RemoteTimeout, asyncssh.Error) as exc:
                message = (f"cannot reach {self.config.id} ({self._describe()}): "
                           f"{exc or type(exc).__name__}")
                self._failures[index] += 1
                self._down[index] = (time.monotonic() + _down_pause(self._failures[index]),
                                     message)
                raise HPCUnavailable(message) from exc
            self._down[index], self._failures[index] = None, 0
            self._conns[index] = conn
            return conn

    def _drop(self, index: int, conn) -> None:
        if self._conns[index] is conn:
            self._conns[index] = None
        with contextlib.suppress(Exception):
            conn.close()

    @contextlib.asynccontextmanager
    async def _channel_slot(self):
        if self._closed:
            raise HPCUnavailable(f"pool for {self.config.id} is closed")
        index = await self._take_slot(self.config.command_timeout)
        try:
            yield index
        finally:
            self._slots.put_nowait(index)

    async def _take_slot(self, limit: float) -> int:
        """A slot token within `limit` seconds, else RemoteTimeout: every channel is held by
        something that does not end. (Not wait_for: before 3.11 it can drop a token taken
        just as the deadline passes.)"""
        getter = asyncio.ensure_future(self._slots.get())
        taken = False
        try:
            await asyncio.wait({getter}, timeout=limit)
            if getter.done():
                taken = True
                return getter.result()
            raise RemoteTimeout(f"{self.config.id}: no free channel in {limit:g} s")
        finally:
            if not taken:
                getter.cancel()
                getter.add_done_callback(self._give_back)

    def _give_back(self, getter: asyncio.Future) -> None:
        if not getter.cancelled() and getter.exception() is None:
            self._slots.put_nowait(getter.result())

    # --- commands -------------------------------------------------------------------
    async def run(self, argv: Sequence[str], stdin: str | None = None,
                  timeout: float | None = None) -> CommandResult:
        """Run one command; argv is quoted with shlex.join, never spliced into shell text."""
        command = shlex.join(argv)
        limit = timeout or self.config.command_timeout
        await self._limiter.acquire()
        self.commands.record(argv)
        for attempt in range(_OPEN_ATTEMPTS):
            async with self._channel_slot() as index:
                conn = await self._connection(index)
                try:
                    return await self._run_on(index, conn, argv, command, stdin, limit)
                except asyncssh.ChannelOpenError as exc:
                    refused = exc  # the command never started: safe to try again
                    self._refused(index, conn)
            await asyncio.sleep(_refusal_pause(attempt))  # outside the slot
        raise HPCUnavailable(f"{self.config.id}: sshd refused {_OPEN_ATTEMPTS} channels "
                             f"in a row for {argv[0]}: {refused.reason}")

    async def _run_on(self, index, conn, argv, command, stdin, limit) -> CommandResult:
        process = None
        try:
            process = await asyncio.wait_for(conn.create_process(command, input=stdin), limit)
            result = await process.wait(check=False, timeout=limit)
        except asyncssh.ChannelOpenError:
            raise
        except (asyncio.TimeoutError, TimeoutError) as exc:  # asyncssh's is one too
            _stop(process)
            raise RemoteTimeout(
                f"{self.config.id}: {argv[0]} timed out after {limit:g} s") from exc
        except asyncio.CancelledError:
            _stop(process)
            raise
        except Exception as exc:
            if _lost(conn, exc):
                self._drop(index, conn)
                raise CommandInterrupted(
                    f"{self.config.id}: connection lost during {argv[0]}: {exc}") from exc
            if isinstance(exc, asyncssh.Error):
                raise classify(exc, f"{self.config.id}: {argv[0]}") from exc
            raise
        if result.exit_status is None:  # connection lost mid-command
            self._drop(index, conn)
            raise CommandInterrupted(f"{self.config.id}: {argv[0]} was interrupted")
        return CommandResult(tuple(argv), result.exit_status,
                             _text(result.stdout), _text(result.stderr))

    def _refused(self, index: int, conn) -> None:
        """A channel was not opened: only a dead connection is dropped (see _OPEN_ATTEMPTS)."""
        self.channel_refusals += 1
        if conn.is_closed():
            self._drop(index, conn)

    # --- SFTP -----------------------------------------------------------------------
    @contextlib.asynccontextmanager
    async def sftp(self):
        """An SFTP client on a slot of its own; every error in the block leaves as a
        ConnectorError (errors.classify); its channel is closed after each use. (A request
        hanging on the server is released by sftp.py: sshd refuses signals to it.)"""
        for attempt in range(_OPEN_ATTEMPTS):
            async with self._channel_slot() as index:
                conn = await self._connection(index)
                client = await self._start_sftp(index, conn)
                if client is not None:
                    async with self._lent(index, conn, client):
                        yield client
                    return
            await asyncio.sleep(_refusal_pause(attempt))
        raise HPCUnavailable(f"{self.config.id}: sshd refused {_OPEN_ATTEMPTS} SFTP channels "
                             "in a row")

    async def _start_sftp(self, index, conn):
        """A new SFTP client, or None when sshd refused the channel (tried again)."""
        try:
            return await within(conn.start_sftp_client(), self.config.sftp_timeout,
                                f"{self.config.id}: starting SFTP")
        except asyncssh.ChannelOpenError:
            self._refused(index, conn)
            return None
        except Exception as exc:
            if _lost(conn, exc):
                self._drop(index, conn)
            if isinstance(exc, (ConnectorError, asyncssh.Error, ConnectionError)):
                raise classify(exc, f"{self.config.id}: sftp") from exc
            raise

    @contextlib.asynccontextmanager
    async def _lent(self, index, conn, client):
        self.commands.record(["sftp"])
        try:
            yield client
        except Exception as exc:
            if _lost(conn, exc):
                self._drop(index, conn)
                raise CommandInterrupted(f"{self.config.id}: sftp: {exc}") from exc
            if isinstance(exc, asyncssh.Error):
                raise classify(exc, f"{self.config.id}: sftp") from exc
            raise  # ConnectorErrors already classified; local OSErrors are the caller's
        finally:
            client.exit()

    # --- port forwarding ------------------------------------------------------------
    async def open_tunnel(self, host: str, port: int, timeout: float | None = None) -> Tunnel:
        """A connection to host:port as the login node sees it (a compute node's service)
        over the least-loaded pooled connection: no SSH connection of its own. Raises
        TunnelRefused (nothing accepts it there), HPCUnavailable, RemoteTimeout."""
        if self._closed:
            raise HPCUnavailable(f"pool for {self.config.id} is closed")
        limit = timeout or self.config.connect_timeout
        await within(self._tunnel_budget.acquire(), limit, f"{self.config.id}: tunnels")
        index = min(range(len(self._conns)), key=lambda i: self.tunnels_open[i])
        self.tunnels_open[index] += 1
        try:
            conn = await self._connection(index)
            try:
                reader, writer = await within(conn.open_connection(host, port), limit,
                                              f"{self.config.id}: forward to {host}:{port}")
            except asyncssh.ChannelOpenError as exc:
                raise TunnelRefused(f"{host}:{port} refused: {exc.reason}") from exc
            except (OSError, asyncssh.Error) as exc:
                if _lost(conn, exc):
                    self._drop(index, conn)
                raise CommandInterrupted(f"{self.config.id}: forward to {host}:{port}: "
                                         f"{exc}") from exc
        except BaseException:
            self._tunnel_closed(index)
            raise
        return Tunnel(self, index, reader, writer)

    def _tunnel_closed(self, index: int) -> None:
        self.tunnels_open[index], _ = self.tunnels_open[index] - 1, self._tunnel_budget.release()
    async def close(self) -> None:
        self._closed = True
        for index, conn in enumerate(self._conns):
            if conn is not None:
                self._drop(index, conn)
                with contextlib.suppress(Exception):
                    await conn.wait_closed()


def _stop(process) -> None:
    """Kill a remote command we stopped waiting for, and close its channel: sshd counts a
    session until its process exits (it would hold a MaxSessions place for good)."""
    if process is None or process.exit_status is not None:
        return
    with contextlib.suppress(Exception):
        process.kill()  # an SSH "signal" request; OpenSSH 9 honours it
    with contextlib.suppress(Exception):
        process.close()


def _text(value) -> str:
    if value is None:
        return ""
    return value.decode(errors="replace") if isinstance(value, bytes) else value
