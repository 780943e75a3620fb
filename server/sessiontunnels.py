"""The middleware's ways to session services, for the proxy (server/sessionproxy.py): one
connector pool per HPC made on first use (its SSH connections carry every forwarded
connection), forwarded connections kept for HTTP keep-alive, and activity written at most
once per period."""
from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from hpcbridge.connectors.errors import HPCUnavailable, RemoteTimeout

log = logging.getLogger("hpcbridge.server")


class LocalTunnel:
    """A plain TCP connection (an HPC run on this machine: the local scheduler)."""

    def __init__(self, reader, writer):
        self.reader, self.writer = reader, writer

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.writer.close()


class Tunnels:
    """The middleware's way to the services: one transport per HPC (its connector pool),
    made on first use in the serving loop, closed at shutdown."""

    def __init__(self, hpcs: dict, registry: dict):
        self.hpcs, self.registry = hpcs, registry
        self.transports: dict = {}

    def transport(self, hpc_id: str):
        if hpc_id not in self.transports:
            cfg = self.hpcs[hpc_id]
            self.transports[hpc_id] = self.registry[cfg.scheduler].default_transport(cfg)
        return self.transports[hpc_id]

    async def open(self, hpc_id: str, host: str, port: int, timeout: float):
        if hpc_id not in self.hpcs:
            raise HPCUnavailable(f"HPC {hpc_id} is no longer configured")
        transport = self.transport(hpc_id)
        if hasattr(transport, "open_tunnel"):
            return await transport.open_tunnel(host, port, timeout)
        try:
            return LocalTunnel(*await asyncio.wait_for(asyncio.open_connection(host, port),
                                                       timeout))
        except asyncio.TimeoutError:
            raise RemoteTimeout(f"connecting to {host}:{port}: no answer in {timeout:g} s") \
                from None
        except OSError as exc:
            from hpcbridge.connectors.pool import TunnelRefused
            raise TunnelRefused(f"{host}:{port} refused: {exc}") from exc

    def connections(self) -> int:
        """SSH connections opened so far (for measurements)."""
        return sum(getattr(t, "connections_opened", 0) for t in self.transports.values())

    async def close(self) -> None:
        for transport in self.transports.values():
            with contextlib.suppress(Exception):
                await asyncio.wait_for(transport.close(), 10)


class Activity:
    """When each session's activity was last written (per process): one write per period."""

    def __init__(self):
        self.written: dict[str, float] = {}

    def seen(self, store, session_id: str, period: float) -> None:
        now = time.monotonic()
        if now - self.written.get(session_id, -1e9) < period:
            return
        self.written[session_id] = now
        try:
            store.touch_session(session_id)
        except Exception:  # a missed activity write is no reason to fail the traffic
            log.warning("could not record activity of session %s", session_id, exc_info=True)


ACTIVITY = Activity()


class IdleTunnels:
    """Forwarded connections kept after a complete exchange for the next body-less request
    of the same session (HTTP keep-alive toward the service: no channel opened per
    request): at most `per_session` each, for at most `seconds`."""

    def __init__(self, per_session: int = 4, seconds: float = 15.0):
        self.per_session, self.seconds = per_session, seconds
        self.idle: dict[str, list] = {}
        self.swept = time.monotonic()

    def take(self, session_id: str):
        self.sweep()
        kept = self.idle.get(session_id) or []
        while kept:
            tunnel, _ = kept.pop()
            if not tunnel.reader.at_eof():
                return tunnel
            tunnel.close()
        return None

    def give(self, session_id: str, tunnel) -> None:
        kept = self.idle.setdefault(session_id, [])
        if len(kept) < self.per_session:
            kept.append((tunnel, time.monotonic()))
        else:
            tunnel.close()
        self.sweep()

    def sweep(self) -> None:
        """Close what was kept too long (a session gone quiet keeps nothing for good)."""
        now = time.monotonic()
        if now - self.swept < self.seconds / 3:
            return
        self.swept = now
        for session_id, kept in list(self.idle.items()):
            for tunnel, since in [k for k in kept if now - k[1] >= self.seconds]:
                tunnel.close()
                kept.remove((tunnel, since))
            if not kept:
                del self.idle[session_id]


IDLE = IdleTunnels()
