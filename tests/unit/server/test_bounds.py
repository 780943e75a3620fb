"""Issue 20, the middleware's bounds in the store and around it: logs read by range and
capped per job, upload usage and expiry, per-user slots, private database files and
passwords kept out of what is logged."""
from __future__ import annotations

import datetime as dt
import os
import stat
import time
import tracemalloc

import pytest

from hpcbridge.artifacts import SharedFolderArtifacts
from hpcbridge.server.errors import TooManyRequests
from hpcbridge.server.limits import Slots
from hpcbridge.server.secrets import hide_password, redact
from hpcbridge.server.store import Store
from hpcbridge.server.storefiles import LOG_CAPPED_EVENT
from hpcbridge.server.uploadstore import (
    INCOMING_PREFIX,
    expire_uploads,
    private_dir,
    remove_stale_incoming,
)


@pytest.fixture
def store(tmp_path) -> Store:
    return Store(f"sqlite:///{tmp_path}/hpcbridge.db")


def new_job(store, user="alice"):
    return store.create_job(user=user, app="hello", hpc="local", params={}, resources={})


def test_read_log_loads_only_the_chunks_it_answers_with(store):
    job = new_job(store)
    piece = 256 << 10
    for i in range(80):  # a 20 MiB log
        assert store.append_log(job.id, "stdout", i * piece, bytes([65 + i % 26]) * piece)
    tracemalloc.start()
    try:
        data, next_offset = store.read_log(job.id, "stdout", 1000, 10)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert (data, next_offset) == (b"A" * 10, 1010)
    assert peak < 4 * piece, f"read 10 bytes with a peak of {peak} bytes"


def test_read_log_by_range_across_chunks_and_at_the_end(store):
    job = new_job(store)
    for offset, text in [(0, b"hello "), (6, b"big "), (10, b"world\n")]:
        assert store.append_log(job.id, "stdout", offset, text)
    assert store.read_log(job.id, "stdout") == (b"hello big world\n", 16)
    assert store.read_log(job.id, "stdout", 3, 6) == (b"lo big", 9)
    assert store.read_log(job.id, "stdout", 9, 100) == (b" world\n", 16)
    assert store.read_log(job.id, "stdout", 16, 5) == (b"", 16)
    assert store.read_log(job.id, "stdout", 99, 5) == (b"", 99)


def test_a_log_past_its_cap_is_counted_not_kept_with_one_event(tmp_path):
    store = Store(f"sqlite:///{tmp_path}/db.sqlite", max_log_bytes=10)
    job = new_job(store)
    assert store.append_log(job.id, "stdout", 0, b"12345678")
    assert store.append_log(job.id, "stdout", 8, b"90abcd")   # crosses the cap
    assert store.append_log(job.id, "stdout", 14, b"efgh")    # past it
    assert store.get_job(job.id).stdout_size == 18  # the reader goes on from the real end
    assert store.read_log(job.id, "stdout") == (b"1234567890", 10)
    capped = [e for e in store.events(job.id) if e.type == LOG_CAPPED_EVENT]
    assert len(capped) == 1 and "10 bytes" in capped[0].message
    assert not store.append_log(job.id, "stdout", 14, b"efgh")  # still idempotent


def test_upload_usage_and_expiry_of_uploads_no_job_uses(store, tmp_path):
    uploads = private_dir(str(tmp_path / "uploads"))
    artifacts = SharedFolderArtifacts(root=str(tmp_path))
    now = dt.datetime.now(dt.timezone.utc)
    old = now - dt.timedelta(days=30)
    made = {}
    for name, user in [("kept-by-job", "alice"), ("unused", "alice"), ("fresh", "bob")]:
        upload_id = name.replace("-", "") + "0" * 20
        path = os.path.join(uploads, upload_id)  # the artifact store's place for it
        os.makedirs(path)
        open(os.path.join(path, "f"), "w").write("x")
        made[name] = store.add_upload(id=upload_id, user=user,
                                      name=name, path=path, size=100,
                                      created_at=now if name == "fresh" else old)
    store.create_job(user="alice", app="hello", hpc="local", params={}, resources={},
                     upload=made["kept-by-job"].id)
    assert store.upload_usage("alice") == 200 and store.upload_usage("nobody") == 0
    outside = tmp_path / "outside"
    outside.mkdir()
    store.add_upload(id="evil" + "0" * 28, user="alice", name="evil", path=str(outside),
                     size=1, created_at=old)
    assert expire_uploads(store, artifacts, max_age=86400) == 2
    assert sorted(os.listdir(uploads)) == sorted([made["fresh"].id, made["kept-by-job"].id])
    assert outside.exists()  # removed by id: a record's path never names what is removed
    assert store.upload_usage("alice") == 100


def test_stale_incoming_files_are_removed(tmp_path):
    uploads = tmp_path / "uploads"
    uploads.mkdir()
    old = uploads / f"{INCOMING_PREFIX}old"
    new = uploads / f"{INCOMING_PREFIX}new"
    other = uploads / "abc"
    for path in (old, new, other):
        path.write_text("x")
    os.utime(old, (time.time() - 7200, time.time() - 7200))
    os.utime(other, (time.time() - 7200, time.time() - 7200))
    assert remove_stale_incoming(SharedFolderArtifacts(root=str(tmp_path)), 3600) == 1
    assert not old.exists() and new.exists() and other.exists()


def test_slots_bound_each_user_alone():
    slots = Slots("event streams", 2)
    slots.take("a")
    slots.take("a")
    slots.take("b")
    with pytest.raises(TooManyRequests) as info:
        slots.take("a")
    assert info.value.status == 429 and "at most 2" in info.value.message
    slots.give("a")
    with slots.hold("a"):
        pass
    slots.give("a")
    slots.give("b")
    assert not slots.held


def test_the_database_and_its_folders_are_private(tmp_path):
    old = os.umask(0o022)
    try:
        folder = tmp_path / "data"
        store = Store(f"sqlite:///{folder}/hpcbridge.db")
        store.append_log(new_job(store).id, "stdout", 0, b"x")
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.stat(folder).st_mode) == 0o700
    for name in os.listdir(folder):
        if name.startswith("hpcbridge.db"):
            mode = stat.S_IMODE(os.stat(folder / name).st_mode)
            assert mode == 0o600, (name, oct(mode))
    assert {"hpcbridge.db", "hpcbridge.db-wal"} <= set(os.listdir(folder))
    store.close()


@pytest.mark.parametrize("password", ["s3cr%et", "p@ss:w/rd", "plain-pass-123"])
def test_database_passwords_are_hidden(password):
    from urllib.parse import quote
    url = f"postgresql+psycopg://hpc:{quote(password, safe='')}@db:5432/hpc"
    assert password not in hide_password(url) and "***" in hide_password(url)
    message = f"could not connect with {url} ({password})"
    assert password not in redact(message, url)
    assert quote(password, safe="") not in redact(message, url)
    raw = f"postgresql://hpc:{password}@db/hpc"  # not even a valid URL
    assert password not in redact(f"bad url {raw}", raw)
