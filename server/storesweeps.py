"""The store's records of parameter sweeps: a sweep and its element jobs, created together.
A part of Store (server/store.py), the one database writer."""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import func, insert, update
from sqlalchemy.exc import IntegrityError
from sqlmodel import select

from hpcbridge.clock import utcnow
from hpcbridge.lifecycle import ACTIVE, JobStatus

from .models import Event, Job, Sweep, new_id

# the key an idempotent sweep request leaves on its element 0 (Job's unique (user, key)
# index decides concurrent requests); the prefix keeps it apart from POST /jobs keys
SWEEP_KEY_PREFIX = "sweep:"


class SweepRecords:
    """Mixed into Store: needs self.session()."""

    def create_sweep(self, user: str, app: str, hpc: str, resources: dict[str, Any],
                     upload: str | None, throttle: int | None,
                     points: Sequence[dict[str, Any]], key: str | None = None,
                     fingerprint: str | None = None,
                     notify: dict[str, str] | None = None) -> Sweep:
        """The sweep and one queued job per point (sweep_index 0..N-1), with their queued
        events, in one transaction of bulk inserts. With an idempotency `key`, element 0
        carries it: IntegrityError when the user's key is taken (the caller replays).
        `notify` is told once, when the sweep ends (storenotify), its elements never."""
        now = utcnow()
        sweep = Sweep(id=new_id(), user=user, app=app, hpc=hpc, size=len(points),
                      resources=resources, throttle=throttle, upload=upload, notify=notify,
                      created_at=now, updated_at=now)
        rows = [{"id": new_id(), "user": user, "app": app, "hpc": hpc,
                 "status": JobStatus.QUEUED.value, "params": params, "resources": resources,
                 "upload": upload, "sweep_id": sweep.id, "sweep_index": index,
                 "cancel_requested": False, "stdout_size": 0, "stderr_size": 0,
                 "idempotency_key": None, "idempotency_fingerprint": None,
                 "created_at": now, "queued_at": now, "updated_at": now}
                for index, params in enumerate(points)]
        if key is not None and rows:
            rows[0]["idempotency_key"] = SWEEP_KEY_PREFIX + key
            rows[0]["idempotency_fingerprint"] = fingerprint
        message = f"queued for {hpc} (sweep {sweep.id})"
        events = [{"job_id": row["id"], "time": now, "type": JobStatus.QUEUED.value,
                   "message": message} for row in rows]
        with self.session() as s:
            s.add(sweep)
            s.flush()
            s.execute(insert(Job), rows)  # executemany: one round trip per batch
            s.execute(insert(Event), events)
            s.commit()
        return sweep

    def create_sweep_once(self, user: str, key: str, fingerprint: str,
                          **fields) -> tuple[Sweep, Job | None]:
        """(the new sweep, None), or (its sweep, its element 0) when `user`'s key was used
        first (the caller compares fingerprints)."""
        try:
            return self.create_sweep(user, key=key, fingerprint=fingerprint, **fields), None
        except IntegrityError:
            first = self.job_by_key(user, SWEEP_KEY_PREFIX + key)
            if first is None or first.sweep_id is None:
                raise  # another constraint failed: not ours to hide
            return self.get_sweep(first.sweep_id), first

    def sweep_by_key(self, user: str, key: str) -> tuple[Sweep, Job] | None:
        first = self.job_by_key(user, SWEEP_KEY_PREFIX + key)
        if first is None or first.sweep_id is None:
            return None
        return self.get_sweep(first.sweep_id), first

    def get_sweep(self, sweep_id: str, user: str | None = None) -> Sweep | None:
        with self.session() as s:
            sweep = s.get(Sweep, sweep_id)
        if sweep is None or (user is not None and sweep.user != user):
            return None
        return sweep

    def list_sweeps(self, user: str | None = None, limit: int = 50,
                    offset: int = 0) -> tuple[list[Sweep], int]:
        query = select(Sweep)
        if user is not None:
            query = query.where(Sweep.user == user)
        with self.session() as s:
            total = s.exec(select(func.count()).select_from(query.subquery())).one()
            sweeps = s.exec(query.order_by(Sweep.created_at.desc(), Sweep.id)
                            .offset(offset).limit(limit)).all()
        return list(sweeps), total

    def sweep_counts(self, sweep_ids: Sequence[str]) -> dict[str, dict[str, int]]:
        """Each sweep's elements by status (statuses with elements only): one GROUP BY."""
        counts: dict[str, dict[str, int]] = {i: {} for i in sweep_ids}
        if not sweep_ids:
            return counts
        with self.session() as s:
            rows = s.exec(select(Job.sweep_id, Job.status, func.count())
                          .where(Job.sweep_id.in_(list(sweep_ids)))
                          .group_by(Job.sweep_id, Job.status)).all()
        for sweep_id, status, n in rows:
            counts[sweep_id][status] = n
        return counts

    def sweep_jobs(self, sweep_id: str, status: Sequence[str] | None = None,
                   limit: int = 50, offset: int = 0) -> tuple[list[Job], int]:
        """A sweep's elements in index order, a page at a time."""
        query = select(Job).where(Job.sweep_id == sweep_id)
        if status:
            query = query.where(Job.status.in_(list(status)))
        with self.session() as s:
            total = s.exec(select(func.count()).select_from(query.subquery())).one()
            jobs = s.exec(query.order_by(Job.sweep_index).offset(offset).limit(limit)).all()
        return list(jobs), total

    def sweeps_to_clean(self, hpc: str, limit: int = 20) -> list[tuple[str, str]]:
        """(sweep id, one of its element ids) of `hpc`'s ended sweeps whose HPC folder is
        still to be dealt with (the maintainer's reconciliation offers the element: its
        task cleans the folder)."""
        with self.session() as s:
            sweeps = s.exec(select(Sweep.id).where(
                Sweep.hpc == hpc, Sweep.ended_at.is_not(None), Sweep.cleaned_at.is_(None),
                Sweep.remote_dir.is_not(None)).order_by(Sweep.ended_at).limit(limit)).all()
            if not sweeps:
                return []
            firsts = s.exec(select(Job.sweep_id, func.min(Job.id))
                            .where(Job.sweep_id.in_(list(sweeps))).group_by(Job.sweep_id)).all()
        return sorted(firsts)

    def sweep_cleaned(self, sweep_id: str) -> bool:
        """Record that the ended sweep's HPC folder was dealt with, once (a conditional
        UPDATE): False when it already was."""
        now = utcnow()
        with self.session() as s:
            result = s.exec(update(Sweep).where(Sweep.id == sweep_id,
                                                Sweep.ended_at.is_not(None),
                                                Sweep.cleaned_at.is_(None))
                            .values(cleaned_at=now, updated_at=now))
            s.commit()
        return result.rowcount == 1

    def cancel_sweep(self, sweep_id: str) -> list[str]:
        """Record a cancel request on every active element not yet asked (one conditional
        UPDATE, so concurrent requests write each element's event once), as request_cancel
        does for one job; the ids of the elements marked now."""
        now = utcnow()
        active = (Job.sweep_id == sweep_id, Job.status.in_(list(ACTIVE)),
                  Job.cancel_requested.is_(False))
        with self.session() as s:
            # PostgreSQL: lock the rows in id order first, as transition_many moves them;
            # one UPDATE locks in scan order, and two writers locking overlapping rows in
            # different orders deadlock (SQLite has one writer: FOR UPDATE is left out)
            s.execute(select(Job.id).where(*active).order_by(Job.id).with_for_update()).all()
            marked = s.execute(update(Job).where(*active)
                               .values(cancel_requested=True, updated_at=now)
                               .returning(Job.id)).all()
            ids = [row[0] for row in marked]
            if ids:
                s.execute(insert(Event), [
                    {"job_id": i, "time": now, "type": "cancel_requested",
                     "message": "cancel requested (the sweep was cancelled)"} for i in ids])
            s.execute(update(Sweep).where(Sweep.id == sweep_id).values(updated_at=now))
            s.commit()
        return ids
