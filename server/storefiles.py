"""The store's records of bytes: job logs (read by range, capped per job) and uploads
(usage per user, expiry). A part of Store (server/store.py), the one database writer."""
from __future__ import annotations

import datetime as dt

from sqlalchemy import func, update
from sqlmodel import select

from hpcbridge.clock import utcnow
from hpcbridge.lifecycle import FINAL

from .models import Event, Job, LogChunk, Upload

DEFAULT_MAX_LOG_BYTES = 64 << 20  # per job and stream
LOG_CAPPED_EVENT = "log_capped"
# Log text carried by a notice at most; past it the notice names only the offset and the
# stream's client reads the range (a pub/sub message is copied to every subscriber).
LOG_NOTICE_MAX_BYTES = 64 << 10


class FileRecords:
    """Mixed into Store: needs self.session(), self.max_log_bytes, self.event_hooks and
    self.run_event_hooks."""

    max_log_bytes: int = DEFAULT_MAX_LOG_BYTES

    # --- logs -----------------------------------------------------------------------
    def append_log(self, job_id: str, stream: str, offset: int, data: bytes) -> bool:
        """Append bytes at `offset` if that is the current end (idempotent under retries).

        Past max_log_bytes the bytes are counted (the cursor moves, so the reader goes on
        from the log's real end) but not kept, and the job gets one `log_capped` event."""
        if not data:
            return False
        cursor = Job.stdout_size if stream == "stdout" else Job.stderr_size
        cap = self.max_log_bytes
        kept = data[:max(0, cap - offset)]
        now = utcnow()
        capped = None
        with self.session() as s:
            # RETURNING the user: the log notice names it (SQLite >= 3.35, PostgreSQL)
            user = s.exec(update(Job).where(Job.id == job_id, cursor == offset)
                          .values({cursor.key: offset + len(data), "log_changed_at": now})
                          .returning(Job.user)).first()
            if user is None:
                s.rollback()
                return False
            if kept:
                s.add(LogChunk(job_id=job_id, stream=stream, offset=offset, data=kept))
            if len(kept) < len(data) and offset <= cap:  # the append that crossed the cap
                capped = Event(job_id=job_id, time=now, type=LOG_CAPPED_EVENT,
                               message=f"the {stream} log is longer than {cap} bytes, the "
                                       "limit of this site: the rest is not kept")
                s.add(capped)
            s.commit()
        if self.event_hooks:
            self.run_event_hooks(log_notice(job_id, user[0], stream, offset, data, kept))
            if capped is not None:
                self.events_written([(capped.id, job_id, user[0])])
        return True

    def read_log(self, job_id: str, stream: str, offset: int = 0,
                 limit: int = 1 << 20) -> tuple[bytes, int]:
        """Up to `limit` bytes of a log from `offset`, and the offset after them. Only the
        chunks overlapping [offset, offset + limit) are read from the database. Nothing is
        kept past max_log_bytes, so an offset beyond it answers at once (and never reaches
        the database, whose offset column is a 32-bit INTEGER on PostgreSQL)."""
        if offset >= self.max_log_bytes:
            return b"", offset
        end = min(offset + limit, self.max_log_bytes)
        with self.session() as s:
            rows = s.exec(select(LogChunk.offset, LogChunk.data).where(
                LogChunk.job_id == job_id, LogChunk.stream == stream,
                LogChunk.offset < end,
                LogChunk.offset + func.length(LogChunk.data) > offset)
                .order_by(LogChunk.offset)).all()
        out = bytearray()
        position = offset
        for chunk_offset, data in rows:
            start = position - chunk_offset
            if start < 0:  # a gap: what follows is not contiguous
                break
            out += data[start:start + (end - position)]
            position = offset + len(out)
            if position >= end:
                break
        return bytes(out), position

    # --- uploads --------------------------------------------------------------------
    def add_upload(self, **fields) -> Upload:
        upload = Upload(**fields)
        with self.session() as s:
            s.add(upload)
            s.commit()
        return upload

    def get_upload(self, upload_id: str, user: str | None = None) -> Upload | None:
        with self.session() as s:
            upload = s.get(Upload, upload_id)
        if upload is None or (user is not None and upload.user != user):
            return None
        return upload

    def upload_usage(self, user: str) -> int:
        """Bytes of every upload `user` holds."""
        with self.session() as s:
            return int(s.exec(select(func.coalesce(func.sum(Upload.size), 0))
                              .where(Upload.user == user)).one())

    def unused_uploads(self, before: dt.datetime, limit: int = 500) -> list[Upload]:
        """Uploads made before `before` that no job still to end refers to."""
        busy = select(Job.upload).where(Job.upload.is_not(None),
                                        Job.status.not_in(list(FINAL)))
        with self.session() as s:
            return list(s.exec(select(Upload).where(Upload.created_at < before,
                                                    Upload.id.not_in(busy))
                               .order_by(Upload.created_at).limit(limit)).all())

    def remove_upload(self, upload_id: str) -> None:
        with self.session() as s:
            upload = s.get(Upload, upload_id)
            if upload is not None:
                s.delete(upload)
                s.commit()


def log_notice(job_id: str, user: str, stream: str, offset: int, data: bytes,
               kept: bytes) -> dict:
    """The notice of log bytes stored at `offset`: their text when all were kept and they
    are small enough, else null (the client reads the range). Bytes are decoded as UTF-8,
    a character cut at a chunk's edge as U+FFFD; `offset` and `size` count bytes."""
    whole = len(kept) == len(data) and len(data) <= LOG_NOTICE_MAX_BYTES
    return {"kind": "log", "job_id": job_id, "user": user, "stream": stream,
            "offset": offset, "size": len(data),
            "text": data.decode("utf-8", "replace") if whole else None}
