"""The periodic clean-up of the artifact store: uploads no job uses, upload temp files and
unfinished writes left by a crash (docs/security.md). Files through Site.artifacts only."""
from __future__ import annotations

import datetime as dt
import logging

from hpcbridge.archive import UnsafePath
from hpcbridge.artifacts import INCOMING_PREFIX, ArtifactStore, private_dir
from hpcbridge.clock import utcnow

log = logging.getLogger("hpcbridge.server")
__all__ = ["INCOMING_PREFIX", "clean_up", "expire_uploads", "private_dir",
           "remove_stale_incoming"]
# a write of results or an app snapshot (a worker's, a middleware's) left this long is dead:
# far past the longest task (hpcbridge.taskqueue.TASK_TIMEOUT_SECONDS)
STALE_WRITE_SECONDS = 2 * 86400.0


def remove_stale_incoming(artifacts: ArtifactStore, older_than: float) -> int:
    """Remove upload temp files (and unfinished upload writes) not written to for
    `older_than` seconds; how many."""
    return artifacts.remove_stale("uploads", older_than)


def expire_uploads(store, artifacts: ArtifactStore, max_age: float) -> int:
    """Remove uploads older than `max_age` seconds that no job still to end uses: their
    files first, then their record. How many were removed."""
    before = utcnow() - dt.timedelta(seconds=max_age)
    removed = 0
    for upload in store.unused_uploads(before):
        try:  # by id: a record never names what is removed
            artifacts.delete("uploads", upload.id)
        except UnsafePath as exc:
            log.warning("upload %s not removed: %s", upload.id, exc)
        store.remove_upload(upload.id)
        removed += 1
    return removed


def clean_up(ctx) -> None:
    """One round of the clean-up; never raises (it runs in the io loop's timer)."""
    artifacts = ctx.site.artifacts
    try:
        gone = expire_uploads(ctx.store, artifacts, ctx.upload_max_age)
        stale = remove_stale_incoming(artifacts, ctx.upload_body_timeout + 60)
        stale += sum(artifacts.remove_stale(kind, STALE_WRITE_SECONDS)
                     for kind in ("apps", "results"))
        if gone or stale:
            log.info("clean-up: %d expired uploads and %d stale temporary files removed",
                     gone, stale)
    except Exception as exc:  # the database may be away for a moment: next round
        log.warning("upload clean-up failed: %s", exc)
