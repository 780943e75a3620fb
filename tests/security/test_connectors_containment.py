"""What crosses between the middleware host and the HPC is contained (issue 20), on the
real stack: sshd as hpcuser, and a hostile job on the real Slurm. A job's result/ holding
a setuid file, links to /etc/passwd and to another job's folder, a named pipe, a socket,
an unreadable folder or a tree over the limits: each ends with the right report or a
clear error, in bounded time, modes private and without special bits, and nothing outside
the destination touched. An app holding `shared -> ../..` is refused; what staging makes
on the HPC is private (0700/0600)."""
from __future__ import annotations

import asyncio
import hashlib
import os
import stat
import time
import uuid

import pytest
from filetree import tree_modes as tree

from hpcbridge.connectors.copy import CopyReport
from hpcbridge.connectors.errors import JobFileError, ResultsTooLarge, UnsafeSource
from hpcbridge.connectors.handlers import SlurmHandler
from hpcbridge.connectors.spec import JobSpec, job_name

# A job's hostile result/ ($1), beside another job's folder ($2) holding a secret.
HOSTILE = r'''#!/bin/sh
set -e
r=$1 other=$2
mkdir -p "$r/sub" "$other/result"
echo "bob's secret result" > "$other/result/secret.txt"
cp /bin/true "$r/suid" && chmod 4755 "$r/suid"
echo kept > "$r/sub/ok.txt"
chmod 2775 "$r/sub"
mkdir -m 1777 "$r/tmp"
ln -s /etc/passwd "$r/passwd"
ln -s "$other" "$r/other-job"
ln -s ../../../bob-job "$r/sub/rel"
mkfifo "$r/pipe"
/usr/bin/python3 -c 'import socket, sys; socket.socket(socket.AF_UNIX).bind(sys.argv[1])' "$r/sock"
'''
EXPECTED_TREE = {"suid": stat.S_IFREG | 0o600, "sub": stat.S_IFDIR | 0o700,
                 "sub/ok.txt": stat.S_IFREG | 0o600, "tmp": stat.S_IFDIR | 0o700}
EXPECTED_SKIPPED = {"result/passwd (symbolic link)", "result/other-job (symbolic link)",
                    "result/sub/rel (symbolic link)", "result/pipe (named pipe)",
                    "result/sock (socket)"}


def snapshot(root, leave_out) -> dict[str, tuple]:
    """Every entry under root but `leave_out`: mode, owner, content digest."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if os.path.join(dirpath, d) != str(leave_out)]
        for name in dirnames + filenames:
            path = os.path.join(dirpath, name)
            st = os.lstat(path)
            digest = (hashlib.sha256(open(path, "rb").read()).hexdigest()
                      if stat.S_ISREG(st.st_mode) else None)
            out[os.path.relpath(path, root)] = (st.st_mode, st.st_uid, digest)
    return out


def result_store(tmp_path):
    """The middleware's result store: another job's results beside the one collected."""
    store = tmp_path / "results"
    (store / "bob-job" / "result").mkdir(parents=True)
    (store / "bob-job" / "result" / "out.txt").write_bytes(b"bob's collected result")
    (store / "alice-job").mkdir()
    return store, store / "alice-job"


def assert_contained(dest, tmp_path, before, passwd_before):
    """Nothing but `dest` changed on this host; no special bit, no foreign content in it."""
    assert snapshot(tmp_path, dest) == before
    assert hashlib.sha256(open("/etc/passwd", "rb").read()).digest() == passwd_before
    for dirpath, _, filenames in os.walk(dest):
        assert stat.S_IMODE(os.lstat(dirpath).st_mode) == 0o700, dirpath
        for name in filenames:
            path = os.path.join(dirpath, name)
            st = os.lstat(path)
            assert stat.S_ISREG(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o600, path
            assert st.st_uid == os.getuid()
            data = open(path, "rb").read()
            assert b"root:x:0:0" not in data and b"secret" not in data, path


async def collect(pool, remote, dest, report=None, limit=30):
    start = time.monotonic()
    report = await asyncio.wait_for(pool.download(remote, str(dest), report), limit)
    return report, time.monotonic() - start


async def test_a_hostile_result_folder_is_copied_one_way_private_and_reported(
        hpc_pool, remote_sh, tmp_path):
    pool = await hpc_pool()
    root = await pool.resolve_work_root()
    await remote_sh(pool, HOSTILE, f"{root}/alice/job/result", f"{root}/bob-job")
    store, dest = result_store(tmp_path)
    before = snapshot(tmp_path, dest / "result")
    passwd = hashlib.sha256(open("/etc/passwd", "rb").read()).digest()
    report, took = await collect(pool, "alice/job/result", dest / "result")
    assert tree(dest / "result") == EXPECTED_TREE
    assert set(report.skipped) == EXPECTED_SKIPPED
    assert (report.files, report.folders) == (2, 2)
    assert (dest / "result" / "sub" / "ok.txt").read_bytes() == b"kept\n"
    assert_contained(dest / "result", tmp_path, before, passwd)
    assert took < 10, f"the pipe or a link held the copy for {took:.1f} s"
    assert "result/passwd (symbolic link)" in report.describe()


@pytest.mark.parametrize(("setup", "locked"), [
    ('mkdir -p "$1/locked" && echo x > "$1/locked/f" && chmod 000 "$1/locked"', "locked"),
    ('mkdir -p "$1" && echo x > "$1/f.txt" && chmod 000 "$1/f.txt"', "f.txt"),
])
async def test_an_unreadable_folder_or_file_is_the_jobs_error_not_a_stuck_job(
        hpc_pool, remote_sh, tmp_path, setup, locked):
    pool = await hpc_pool()
    root = await pool.resolve_work_root()
    await remote_sh(pool, setup, f"{root}/job/result")
    store, dest = result_store(tmp_path)
    before = snapshot(tmp_path, dest / "result")
    start = time.monotonic()
    with pytest.raises(JobFileError, match="permission denied") as caught:
        await collect(pool, "job/result", dest / "result")
    assert time.monotonic() - start < 10
    assert caught.value.path == f"{root}/job/result/{locked}"
    assert snapshot(tmp_path, dest / "result") == before


@pytest.mark.parametrize(("limits", "make", "named"), [
    ({"max_result_files": 50}, 'for i in $(seq 60); do echo $i > "$1/f$i"; done',
     "more than 50 files and folders"),
    ({"max_result_bytes": 1024 * 1024}, 'head -c 2097152 /dev/zero > "$1/big"',
     "larger than 1 MiB"),
])
async def test_a_results_tree_over_the_limits_is_refused_naming_the_limit(
        hpc_pool, remote_sh, tmp_path, limits, make, named):
    pool = await hpc_pool(**limits)
    root = await pool.resolve_work_root()
    await remote_sh(pool, 'mkdir -p "$1" && echo small > "$1/first.txt" && ' + make,
                    f"{root}/job/result")
    store, dest = result_store(tmp_path)
    before = snapshot(tmp_path, dest / "result")
    with pytest.raises(ResultsTooLarge, match=named) as caught:
        await collect(pool, "job/result", dest / "result")
    assert "limit of this HPC" in str(caught.value)
    assert caught.value.path == f"{root}/job/result"
    assert snapshot(tmp_path, dest / "result") == before
    assert tree(dest) in ({}, {"result": stat.S_IFDIR | 0o700})  # listed first: no file


async def test_the_limits_count_a_jobs_logs_with_its_results(hpc_pool, remote_sh, tmp_path):
    pool = await hpc_pool(max_result_bytes=1000)
    root = await pool.resolve_work_root()
    await remote_sh(pool, 'mkdir -p "$1/result" && head -c 600 /dev/zero > "$1/result/a" '
                    '&& head -c 600 /dev/zero > "$1/stdout.log"', f"{root}/job")
    report = CopyReport()
    await collect(pool, "job/result", tmp_path / "out" / "result", report)
    with pytest.raises(ResultsTooLarge, match="max_result_bytes"):
        await collect(pool, "job/stdout.log", tmp_path / "out" / "stdout.log", report)
    assert not (tmp_path / "out" / "stdout.log").exists()


def hostile_app(tmp_path):
    """An app in the middleware's data folder holding `shared -> ../..`."""
    data = tmp_path / "middleware-data"
    (data / "results" / "bob-job").mkdir(parents=True)
    (data / "results" / "bob-job" / "secret.txt").write_bytes(b"bob's secret")
    (data / "hub.sqlite").write_bytes(b"the database")
    app = data / "apps" / "hello"
    app.mkdir(parents=True)
    (app / "run.sh").write_bytes(b"#!/bin/sh\necho hi > result/out.txt\n")
    os.chmod(app / "run.sh", 0o755)
    (app / "params.json").write_bytes(b"{}")
    os.symlink("../..", app / "shared")
    return app


async def test_an_app_with_a_link_out_is_refused_and_nothing_of_the_middleware_is_sent(
        hpc_pool, remote_sh, tmp_path):
    pool = await hpc_pool()
    root = await pool.resolve_work_root()
    app = hostile_app(tmp_path)
    await pool.makedirs("alice/job")
    with pytest.raises(UnsafeSource, match="shared: is a symbolic link") as caught:
        for name in sorted(os.listdir(app)):  # as the maintainer's stage_in does
            await pool.upload(str(app / name), f"alice/job/{name}")
    assert caught.value.path == str(app / "shared")
    listing = await remote_sh(pool, 'cd "$1" && find . -mindepth 1 | sort', root)
    assert "secret" not in listing and "sqlite" not in listing and "shared" not in listing
    assert "./alice/job/run.sh" in listing


async def test_what_staging_makes_on_the_hpc_is_private(hpc_pool, remote_sh, tmp_path):
    pool = await hpc_pool()
    root = await pool.resolve_work_root()
    app = hostile_app(tmp_path)
    os.unlink(app / "shared")
    (app / "lib").mkdir()
    (app / "lib" / "tool").write_bytes(b"x")
    os.chmod(app / "lib" / "tool", 0o4755)
    await pool.makedirs("alice/job/result")
    await pool.upload(str(app), "alice/job/app")
    await pool.write_bytes("alice/job/job.json", b"{}")
    await pool.write_bytes("alice/job/job.sbatch", b"#!/bin/bash\n", 0o700)
    modes = dict(line.split(" ", 1)[::-1] for line in (await remote_sh(
        pool, 'cd "$1" && find alice -printf "%m %p\\n"', root)).splitlines())
    assert modes == {"alice": "700", "alice/job": "700", "alice/job/result": "700",
                     "alice/job/app": "700", "alice/job/app/run.sh": "700",
                     "alice/job/app/params.json": "600", "alice/job/app/lib": "700",
                     "alice/job/app/lib/tool": "700", "alice/job/job.json": "600",
                     "alice/job/job.sbatch": "700"}
    assert (await remote_sh(pool, 'stat -c %a "$1"', root)).strip() == "700"


async def test_a_link_in_the_way_on_the_hpc_is_replaced_never_written_through(
        hpc_pool, remote_sh, tmp_path):
    pool = await hpc_pool()
    root = await pool.resolve_work_root()
    await remote_sh(pool, 'mkdir -p "$1/job" "$1/elsewhere" && echo keep > "$1/elsewhere/f" '
                    '&& ln -s "$1/elsewhere/f" "$1/job/job.json" '
                    '&& ln -s "$1/elsewhere" "$1/job/data"', root)
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "f").write_bytes(b"user data")
    await pool.write_bytes("job/job.json", b"{}")
    await pool.upload(str(tmp_path / "data"), "job/data")
    out = await remote_sh(pool, 'cd "$1" && cat elsewhere/f && ls elsewhere && '
                          'find job -printf "%y %p\\n" | sort', root)
    assert out == ("keep\nf\n"
                   "d job\nd job/data\nf job/data/f\nf job/job.json\n")


async def test_a_hostile_job_on_slurm_is_collected_contained(hpc_pool, remote_sh, tmp_path):
    """The whole path: a real Slurm job leaves the hostile tree; stage-out contains it."""
    pool = await hpc_pool()
    handler = SlurmHandler(pool.config, pool)
    root = await pool.resolve_work_root()
    workdir = f"{root}/alice/job-{uuid.uuid4().hex[:8]}"
    await pool.makedirs(workdir + "/result")
    await pool.write_bytes(f"{workdir}/hostile.sh", HOSTILE.encode(), 0o700)
    spec = JobSpec(name=job_name(f"sec-{uuid.uuid4().hex[:8]}"), workdir=workdir,
                   partition="debug", time_minutes=2,
                   command=f'./hostile.sh result {root}/bob-job && touch result/done')
    scheduler_id = await handler.submit(spec)
    try:
        end = time.monotonic() + 90
        while "done" not in await remote_sh(pool, 'ls "$1"', f"{workdir}/result"):
            assert time.monotonic() < end, await remote_sh(pool, 'cat "$1"/*.log', workdir)
            await asyncio.sleep(0.5)
        store, dest = result_store(tmp_path)
        before = snapshot(tmp_path, dest / "result")
        passwd = hashlib.sha256(open("/etc/passwd", "rb").read()).digest()
        report, took = await collect(pool, f"{workdir}/result", dest / "result")
    finally:
        await pool.run(["scancel", scheduler_id])
    assert tree(dest / "result") == {**EXPECTED_TREE, "done": stat.S_IFREG | 0o600}
    assert set(report.skipped) == EXPECTED_SKIPPED
    assert_contained(dest / "result", tmp_path, before, passwd)
    assert took < 10
