"""CyberGIS jobs that are created and set but not yet submitted: drafts in Redis.

CyberGIS's flow is create → set → submit, while an hpcbridge job is queued the moment it
exists. So until `POST /job/{id}/submit` the job is a draft: a JSON value in the queue's Redis
under `<queue_prefix>:cybergis:draft:<user>:<id>`, with a TTL (every middleware of a site
shares it). Submitting takes the draft atomically: two submits of one draft make one job.
"""
from __future__ import annotations

import json
import logging
import urllib.parse
import uuid
from typing import Any

from hpcbridge.clock import utcnow

from .. import errors as E
from .cgmap import iso

log = logging.getLogger("hpcbridge.server")


def _unavailable(exc: Exception) -> E.Unavailable:
    return E.Unavailable("the store of not yet submitted jobs (Redis) does not answer: "
                         f"try again in a moment ({type(exc).__name__})")


class Drafts:
    """One user's drafts. Every Redis command has the middleware connection's deadline;
    a Redis failure is a 503 the client shows, never a 500."""

    def __init__(self, redis, prefix: str, user: str, ttl: float):
        self.redis, self.prefix, self.user, self.ttl = redis, prefix, user, int(max(ttl, 1))

    def key(self, draft_id: str) -> str:
        return f"{self.prefix}:cybergis:draft:{urllib.parse.quote(self.user, safe='')}:" \
               f"{draft_id}"

    def _call(self, fn, *args, **kwargs):
        import redis
        try:
            return fn(*args, **kwargs)
        except redis.RedisError as exc:
            raise _unavailable(exc) from None

    def create(self, hpc: str | None) -> dict[str, Any]:
        now = iso(utcnow())
        draft = {"id": uuid.uuid4().hex, "hpc": hpc, "createdAt": now, "updatedAt": now,
                 "param": {}, "slurm": {}, "env": {}, "localExecutableFolder": None,
                 "localDataFolder": None, "localResultFolder": None}
        self._call(self.redis.set, self.key(draft["id"]), json.dumps(draft), ex=self.ttl)
        return draft

    def get(self, draft_id: str) -> dict[str, Any] | None:
        raw = self._call(self.redis.get, self.key(draft_id))
        return json.loads(raw) if raw else None

    def save(self, draft: dict[str, Any]) -> bool:
        """Write a changed draft back (its TTL starts again); False if it expired."""
        draft["updatedAt"] = iso(utcnow())
        return bool(self._call(self.redis.set, self.key(draft["id"]), json.dumps(draft),
                               ex=self.ttl, xx=True))

    def take(self, draft_id: str) -> dict[str, Any] | None:
        """Read and delete in one transaction: only one caller gets the draft."""
        def get_and_delete():
            pipe = self.redis.pipeline(transaction=True)
            pipe.get(self.key(draft_id))
            pipe.delete(self.key(draft_id))
            return pipe.execute()
        raw, deleted = self._call(get_and_delete)
        return json.loads(raw) if raw and deleted else None

    def put_back(self, draft: dict[str, Any]) -> None:
        """A taken draft whose job could not be created: the user may try again."""
        try:
            self.redis.set(self.key(draft["id"]), json.dumps(draft), ex=self.ttl, nx=True)
        except Exception as exc:  # the submit already failed with its own error: say that one
            log.warning("cybergis draft %s not put back: %s", draft["id"], type(exc).__name__)

    def discard(self, draft_id: str) -> bool:
        return bool(self._call(self.redis.delete, self.key(draft_id)))
