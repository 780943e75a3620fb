"""The server-sent event stream of the caller's job changes."""
from __future__ import annotations

import asyncio
import datetime as dt

from tornado import iostream

from hpcbridge.clock import utcnow

from .base import APIHandler, job_info

KEEPALIVE_SECONDS = 15  # a comment line this often keeps proxies from closing a quiet stream


class EventStreamHandler(APIHandler):
    """Server-sent events: one `job` event per change of the caller's jobs."""

    def set_default_headers(self):
        self.set_header("Content-Type", "text/event-stream")
        self.set_header("Cache-Control", "no-store")
        self.set_header("X-Accel-Buffering", "no")

    async def get(self):
        since = utcnow() - dt.timedelta(seconds=1)
        user = self.job_user_filter()
        quiet = 0.0
        self._closed = False
        self.write(": connected\n\n")
        await self.flush()
        while not self._closed:
            jobs, _ = self.ctx.store.list_jobs(user=user, since=since, limit=500)
            for job in sorted(jobs, key=lambda j: j.updated_at):
                since = max(since, job.updated_at)
                self.write(f"event: job\nid: {job.id}\ndata: {job_info(job).model_dump_json()}\n\n")
            quiet = 0.0 if jobs else quiet + self.ctx.sse_interval
            if quiet >= KEEPALIVE_SECONDS:
                self.write(": keepalive\n\n")
                quiet = 0.0
            try:
                await self.flush()
            except iostream.StreamClosedError:
                return
            await asyncio.sleep(self.ctx.sse_interval)

    def on_connection_close(self):
        self._closed = True
