"""The middleware's own files on its host: private folders, and the periodic clean-up of
uploads no job uses and of upload temp files left by a crash (docs/security.md)."""
from __future__ import annotations

import datetime as dt
import logging
import os
import shutil
import time

from hpcbridge.clock import utcnow

log = logging.getLogger("hpcbridge.server")
INCOMING_PREFIX = ".incoming-"  # an upload being received


def private_dir(path: str) -> str:
    """Make `path` (a folder of the service's own) exist with mode 0700."""
    os.makedirs(path, mode=0o700, exist_ok=True)
    if os.stat(path).st_mode & 0o7777 != 0o700:
        os.chmod(path, 0o700)
    return path


def remove_stale_incoming(uploads_dir: str, older_than: float) -> int:
    """Remove upload temp files not written to for `older_than` seconds; how many."""
    removed = 0
    try:
        entries = list(os.scandir(uploads_dir))
    except FileNotFoundError:
        return 0
    cutoff = time.time() - older_than
    for entry in entries:
        if not entry.name.startswith(INCOMING_PREFIX):
            continue
        try:
            if entry.stat(follow_symlinks=False).st_mtime < cutoff:
                os.unlink(entry.path)
                removed += 1
        except FileNotFoundError:
            pass
    return removed


def expire_uploads(store, uploads_dir: str, max_age: float) -> int:
    """Remove uploads older than `max_age` seconds that no job still to end uses: their
    files first, then their record. How many were removed."""
    before = utcnow() - dt.timedelta(seconds=max_age)
    removed = 0
    root = os.path.realpath(uploads_dir)
    for upload in store.unused_uploads(before):
        path = os.path.realpath(upload.path)
        if os.path.dirname(path) == root:  # only ever a folder of the uploads dir
            shutil.rmtree(path, ignore_errors=True)
        store.remove_upload(upload.id)
        removed += 1
    return removed


def clean_up(ctx) -> None:
    """One round of the clean-up; never raises (it runs in the io loop's timer)."""
    try:
        gone = expire_uploads(ctx.store, ctx.site.uploads_dir, ctx.upload_max_age)
        stale = remove_stale_incoming(ctx.site.uploads_dir, ctx.upload_body_timeout + 60)
        if gone or stale:
            log.info("clean-up: %d expired uploads and %d stale upload files removed",
                     gone, stale)
    except Exception as exc:  # the database may be away for a moment: next round
        log.warning("upload clean-up failed: %s", exc)
