"""Stage-in from the app's own tree only, and private by default on the HPC (issue 20),
through LocalTransport: a link or special file in an app's folder or a user's data refuses
the copy (never followed out: `shared -> ../..` would copy the middleware's data folder to
the HPC); folders arrive 0700, files 0600, executables 0700 and never setuid."""
from __future__ import annotations

import asyncio
import os
import stat

import pytest
from filetree import tree_modes as tree

from hpcbridge.connectors.errors import JobFileError, UnsafeSource
from hpcbridge.connectors.transport import LocalTransport


def app(root):
    """An app folder beside the middleware's data folder (what `../..` reaches)."""
    data = root / "middleware-data"
    (data / "results" / "bob-job").mkdir(parents=True)
    (data / "results" / "bob-job" / "secret.txt").write_bytes(b"bob's result")
    folder = data / "apps" / "hello"
    (folder / "lib").mkdir(parents=True)
    (folder / "run.sh").write_bytes(b"#!/bin/sh\necho hi\n")
    os.chmod(folder / "run.sh", 0o755)
    (folder / "lib" / "data.csv").write_bytes(b"a,b\n")
    os.chmod(folder / "lib" / "data.csv", 0o644)
    return folder


async def stage(t, folder, job="alice/job1"):
    """What the maintainer's stage_in does: each top-level entry of the app folder."""
    await t.makedirs(job)
    for name in sorted(os.listdir(folder)):
        await t.upload(os.path.join(folder, name), f"{job}/{name}")


@pytest.mark.parametrize("link", ["shared", "lib/shared"])
async def test_an_app_holding_a_link_out_is_refused_and_nothing_of_it_is_copied(tmp_path,
                                                                                link):
    folder = app(tmp_path)
    os.symlink("../..", folder / link)
    t = LocalTransport(str(tmp_path / "hpc"))
    with pytest.raises(UnsafeSource) as caught:
        await stage(t, folder)
    assert caught.value.path == str(folder / link)
    assert "symbolic link" in str(caught.value) and isinstance(caught.value, JobFileError)
    copied = tree(tmp_path / "hpc")
    assert not any("secret" in p or "results" in p for p in copied), copied
    assert f"alice/job1/{link}" not in copied


async def test_a_link_inside_the_app_is_refused_too_and_a_pipe_without_a_hang(tmp_path):
    folder = app(tmp_path)
    os.symlink("data.csv", folder / "lib" / "alias.csv")  # stays inside: still refused
    t = LocalTransport(str(tmp_path / "hpc"))
    with pytest.raises(UnsafeSource, match="alias.csv: is a symbolic link"):
        await t.upload(str(folder), "job/app")
    os.unlink(folder / "lib" / "alias.csv")
    os.mkfifo(folder / "lib" / "pipe")
    with pytest.raises(UnsafeSource, match="pipe: is a named pipe"):
        await asyncio.wait_for(t.upload(str(folder), "job/app"), 10)
    assert not (tmp_path / "hpc" / "job" / "app").exists()  # refused before copying


async def test_staged_files_are_private_and_keep_only_the_executable_bit(tmp_path):
    folder = app(tmp_path)
    os.chmod(folder / "lib", 0o777)
    (folder / "suid").write_bytes(b"x")
    os.chmod(folder / "suid", 0o4755)
    t = LocalTransport(str(tmp_path / "hpc"))
    await stage(t, folder)
    assert tree(tmp_path / "hpc") == {
        "alice": stat.S_IFDIR | 0o700, "alice/job1": stat.S_IFDIR | 0o700,
        "alice/job1/lib": stat.S_IFDIR | 0o700,
        "alice/job1/lib/data.csv": stat.S_IFREG | 0o600,
        "alice/job1/run.sh": stat.S_IFREG | 0o700,
        "alice/job1/suid": stat.S_IFREG | 0o700}
    assert (tmp_path / "hpc" / "alice" / "job1" / "run.sh").read_bytes().startswith(b"#!")


async def test_makedirs_and_write_bytes_are_private_by_default(tmp_path):
    t = LocalTransport(str(tmp_path / "hpc"))
    await t.resolve_work_root()
    await t.makedirs("u/j/result")
    await t.write_bytes("u/j/job.json", b"{}")
    await t.write_bytes("u/j/job.sh", b"#!/bin/sh\n", 0o700)
    assert tree(tmp_path / "hpc") == {
        "u": stat.S_IFDIR | 0o700, "u/j": stat.S_IFDIR | 0o700,
        "u/j/result": stat.S_IFDIR | 0o700, "u/j/job.json": stat.S_IFREG | 0o600,
        "u/j/job.sh": stat.S_IFREG | 0o700}
    assert stat.S_IMODE(os.stat(tmp_path / "hpc").st_mode) == 0o700


async def test_a_link_in_the_way_on_the_hpc_is_replaced_never_written_through(tmp_path):
    outside = tmp_path / "outside.txt"
    outside.write_bytes(b"untouched")
    t = LocalTransport(str(tmp_path / "hpc"))
    await t.makedirs("j")
    os.symlink(str(outside), tmp_path / "hpc" / "j" / "job.json")
    os.symlink(str(tmp_path), tmp_path / "hpc" / "j" / "data")
    await t.write_bytes("j/job.json", b"{}")
    src = tmp_path / "data"
    src.mkdir()
    (src / "outside.txt").write_bytes(b"user data")
    await t.upload(str(src), "j/data")
    assert outside.read_bytes() == b"untouched"
    assert not os.path.islink(tmp_path / "hpc" / "j" / "job.json")
    assert not os.path.islink(tmp_path / "hpc" / "j" / "data")
    assert (tmp_path / "hpc" / "j" / "data" / "outside.txt").read_bytes() == b"user data"
