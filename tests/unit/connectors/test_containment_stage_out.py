"""Stage-out as a one-way, bounded copy (issue 20), through LocalTransport: what a job
leaves is untrusted. Only regular files and folders arrive, private (0700/0600) and
without setuid/setgid/sticky bits; links and special files are skipped and reported, never
followed; a tree over the per-job limits is refused before a byte is copied; an unreadable
folder is the job's error; nothing is written outside the destination."""
from __future__ import annotations

import asyncio
import os
import pickle
import pwd
import shutil
import socket
import stat
import tempfile

import pytest
from filetree import tree_modes as modes

from hpcbridge.connectors.copy import (
    CopyLimits,
    CopyReport,
    Entry,
    copy_tree,
    download_policy,
    safe_name,
)
from hpcbridge.connectors.errors import ConnectorError, JobFileError, ResultsTooLarge
from hpcbridge.connectors.localfs import LocalSink
from hpcbridge.connectors.transport import LocalTransport


def job_tree(root) -> str:
    """A job's work dir under root with a result/ folder holding one ordinary file."""
    result = root / "work" / "job" / "result"
    (result / "sub").mkdir(parents=True)
    (result / "ok.txt").write_bytes(b"fine")
    (result / "sub" / "deep.txt").write_bytes(b"deep")
    return str(result)


async def test_a_setuid_file_arrives_private_and_without_the_bit(tmp_path):
    result = job_tree(tmp_path)
    evil = os.path.join(result, "suid")
    shutil.copy("/bin/true", evil)
    os.chmod(evil, 0o4755 | stat.S_ISGID)
    os.chmod(os.path.join(result, "sub"), 0o1777)  # sticky, world-writable
    t = LocalTransport(str(tmp_path / "work"))
    report = await t.download("job/result", str(tmp_path / "out"))
    got = modes(tmp_path / "out")
    assert got == {"suid": stat.S_IFREG | 0o600, "ok.txt": stat.S_IFREG | 0o600,
                   "sub": stat.S_IFDIR | 0o700, "sub/deep.txt": stat.S_IFREG | 0o600}
    assert stat.S_IMODE(os.lstat(tmp_path / "out").st_mode) == 0o700
    assert (tmp_path / "out" / "suid").read_bytes() == open("/bin/true", "rb").read()
    assert (report.files, report.folders, report.skipped) == (3, 1, [])
    assert report.bytes == os.path.getsize("/bin/true") + 8


async def test_links_are_skipped_and_reported_never_followed(tmp_path):
    result = job_tree(tmp_path)
    other = tmp_path / "work" / "other-job" / "result"
    other.mkdir(parents=True)
    (other / "secret.txt").write_bytes(b"another user's result")
    os.symlink("/etc/passwd", os.path.join(result, "passwd"))
    os.symlink(str(other), os.path.join(result, "sub", "other"))
    os.symlink("../..", os.path.join(result, "up"))
    t = LocalTransport(str(tmp_path / "work"))
    report = await t.download("job/result", str(tmp_path / "out"))
    assert sorted(modes(tmp_path / "out")) == ["ok.txt", "sub", "sub/deep.txt"]
    assert sorted(report.skipped) == ["result/passwd (symbolic link)",
                                      "result/sub/other (symbolic link)",
                                      "result/up (symbolic link)"]
    assert "3 entries not collected" in report.describe()
    assert "result/passwd (symbolic link)" in report.describe()


async def test_fifos_sockets_and_devices_are_skipped_without_a_hang(tmp_path):
    result = job_tree(tmp_path)
    os.mkfifo(os.path.join(result, "pipe"))
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(os.path.join(result, "sock"))
    kinds = {"result/pipe (named pipe)", "result/sock (socket)"}
    if os.geteuid() == 0:
        os.mknod(os.path.join(result, "null"), 0o666 | stat.S_IFCHR, os.makedev(1, 3))
        kinds.add("result/null (device)")
    t = LocalTransport(str(tmp_path / "work"))
    try:
        report = await asyncio.wait_for(t.download("job/result", str(tmp_path / "out")), 10)
    finally:
        sock.close()
    assert set(report.skipped) == kinds
    assert sorted(modes(tmp_path / "out")) == ["ok.txt", "sub", "sub/deep.txt"]


async def test_a_top_level_link_or_pipe_is_the_jobs_error_and_nothing_is_written(tmp_path):
    work = tmp_path / "work" / "job"
    work.mkdir(parents=True)
    os.symlink("/etc/passwd", work / "stdout.log")
    os.mkfifo(work / "stderr.log")
    t = LocalTransport(str(tmp_path / "work"))
    for name in ("stdout.log", "stderr.log"):
        with pytest.raises(JobFileError, match="not a regular file"):
            await asyncio.wait_for(t.download(f"job/{name}", str(tmp_path / "o" / name)), 10)
    assert os.listdir(tmp_path / "o") == []


@pytest.mark.parametrize(("limits", "named"), [
    (CopyLimits(max_bytes=4 + 4 + 1000), "max_result_bytes"),
    (CopyLimits(max_files=3), "max_result_files"),
])
async def test_a_tree_over_the_limits_is_refused_before_anything_is_copied(tmp_path, limits,
                                                                           named):
    result = job_tree(tmp_path)
    (tmp_path / "work" / "job" / "result" / "big.bin").write_bytes(b"x" * 1001)
    t = LocalTransport(str(tmp_path / "work"), limits)
    with pytest.raises(ResultsTooLarge, match=named) as caught:
        await t.download("job/result", str(tmp_path / "out"))
    assert caught.value.path == result and isinstance(caught.value, JobFileError)
    assert "the limit of this HPC" in str(caught.value)
    assert modes(tmp_path / "out") == {}  # listed and checked first: nothing copied
    # the same tree within the limits is collected
    t.limits = CopyLimits(max_bytes=4 + 4 + 1001, max_files=4)
    report = await t.download("job/result", str(tmp_path / "out"))
    assert (report.files, report.folders, report.bytes) == (3, 1, 1009)


async def test_the_limits_apply_to_a_jobs_running_total_over_several_downloads(tmp_path):
    job_tree(tmp_path)
    (tmp_path / "work" / "job" / "stdout.log").write_bytes(b"L" * 100)
    t = LocalTransport(str(tmp_path / "work"), CopyLimits(max_bytes=100))
    report = CopyReport()
    await t.download("job/result", str(tmp_path / "out" / "result"), report)
    assert report.bytes == 8
    with pytest.raises(ResultsTooLarge, match="larger than 100 bytes"):
        await t.download("job/stdout.log", str(tmp_path / "out" / "stdout.log"), report)
    assert not (tmp_path / "out" / "stdout.log").exists()


class GrowingSource:
    """An in-process source whose one file is larger when read than lstat said: a job
    that keeps writing after its listing."""

    async def lstat(self, path):
        return Entry("folder") if path == "/r" else Entry("regular file", 10, 0o644)

    async def scandir(self, path):
        return [("f", Entry("regular file", 10, 0o644)), ("..", Entry("folder")),
                ("a/b", Entry("regular file", 1, 0o644))]

    async def open(self, path):
        class Reader:
            chunks = [b"x" * 10, b"y" * 10, b"z" * 10]

            async def read(self, size):
                return self.chunks.pop(0) if self.chunks else b""

            async def close(self):
                pass
        return Reader()


async def test_a_file_that_grows_past_the_limit_while_copied_is_stopped_and_removed(
        tmp_path):
    sink = LocalSink(str(tmp_path / "out"))
    policy = download_policy(CopyLimits(max_bytes=15))
    with pytest.raises(ResultsTooLarge):
        await copy_tree(GrowingSource(), "/r", sink, str(tmp_path / "out"), policy)
    assert os.listdir(tmp_path / "out") == []  # the partial copy is gone
    # the sink writes under its own root only
    with pytest.raises(JobFileError, match="outside the folder"):
        await copy_tree(GrowingSource(), "/r", sink, str(tmp_path / "out2"), policy)
    assert not (tmp_path / "out2").exists()
    # names a listing should never give are skipped, never joined into a path
    report = await copy_tree(GrowingSource(), "/r", LocalSink(str(tmp_path / "out2")),
                             str(tmp_path / "out2"), download_policy(CopyLimits()))
    assert sorted(report.skipped) == ["r/.. (entry with an unsafe name)",
                                      "r/a/b (entry with an unsafe name)"]
    assert os.listdir(tmp_path / "out2") == ["f"]


@pytest.mark.parametrize("name", ["", ".", "..", "a/b", "a\0b"])
def test_unsafe_names(name):
    assert not safe_name(name)


async def test_nothing_is_written_through_a_link_planted_in_the_destination(tmp_path):
    job_tree(tmp_path)
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "ok.txt").write_bytes(b"untouched")
    out = tmp_path / "out"
    out.mkdir()
    os.symlink(str(outside), out / "sub")  # a folder of the copy: a link out
    os.symlink(str(outside / "ok.txt"), out / "ok.txt")  # a file of the copy: a link out
    t = LocalTransport(str(tmp_path / "work"))
    await t.download("job/result", str(out))
    assert sorted(os.listdir(outside)) == ["ok.txt"]
    assert (outside / "ok.txt").read_bytes() == b"untouched"
    assert not os.path.islink(out / "sub") and not os.path.islink(out / "ok.txt")
    assert (out / "ok.txt").read_bytes() == b"fine"


async def test_a_local_failure_stays_an_oserror_not_the_jobs_error(tmp_path):
    job_tree(tmp_path)
    (tmp_path / "afile").write_bytes(b"")
    t = LocalTransport(str(tmp_path / "work"))
    with pytest.raises(OSError) as caught:
        await t.download("job/result", str(tmp_path / "afile" / "out"))
    assert not isinstance(caught.value, ConnectorError)  # the maintainer waits on it


# --- an unreadable folder or file: the job's error, not a hang --------------------------
def run_as_hpcuser(fn):
    """fn() in a child process as hpcuser (root reads whatever the mode): (kind, message,
    path) of what it raised, or ("ok", result)."""
    if os.geteuid() != 0:
        return _outcome(fn)
    try:
        user = pwd.getpwnam("hpcuser")
    except KeyError:
        pytest.skip("no user hpcuser to drop root's rights to (make stack creates it)")
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        os.close(read_end)
        try:
            os.setgroups([])
            os.setgid(user.pw_gid)
            os.setuid(user.pw_uid)
            data = pickle.dumps(_outcome(fn))
        except BaseException as exc:  # noqa: BLE001 - reported to the parent
            data = pickle.dumps(("child failed", repr(exc), ""))
        os.write(write_end, data)
        os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as f:
        data = f.read()
    os.waitpid(pid, 0)
    return pickle.loads(data)


def _outcome(fn):
    try:
        return ("ok", fn())
    except Exception as exc:  # noqa: BLE001 - the test looks at it
        return (type(exc).__name__, str(exc), getattr(exc, "path", ""))


def _unreadable_download(base: str, locked: str):
    """As hpcuser: a job tree with one mode-000 entry, downloaded with a deadline."""
    os.makedirs(f"{base}/work/job/result/{locked}")
    with open(f"{base}/work/job/result/{locked}/data.txt", "wb") as f:
        f.write(b"data")
    os.chmod(f"{base}/work/job/result/{locked}/data.txt", 0)
    os.chmod(f"{base}/work/job/result/{locked}", 0 if locked == "dir" else 0o700)
    t = LocalTransport(f"{base}/work")
    return asyncio.run(asyncio.wait_for(t.download("job/result", f"{base}/out"), 10))


@pytest.mark.parametrize(("locked", "path"), [("dir", "dir"), ("open", "open/data.txt")])
def test_an_unreadable_folder_or_file_is_the_jobs_error_naming_it(locked, path):
    base = tempfile.mkdtemp(prefix="hpcbridge-containment-")
    try:
        if os.geteuid() == 0:
            os.chown(base, pwd.getpwnam("hpcuser").pw_uid, -1)
        kind, message, where = run_as_hpcuser(lambda: _unreadable_download(base, locked))
        assert kind == "JobFileError", message
        assert where == f"{base}/work/job/result/{path}"
        assert "permission denied" in message
    finally:
        for dirpath, dirnames, _ in os.walk(base):  # root or not: make it removable
            for name in dirnames:
                os.chmod(os.path.join(dirpath, name), 0o700)
        shutil.rmtree(base, ignore_errors=True)
