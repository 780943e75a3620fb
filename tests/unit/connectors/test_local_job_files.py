"""LocalTransport reads a job's files as the SFTP transport does: only regular files are
opened (lstat first), and one file that cannot be read stops no other in the batch."""
from __future__ import annotations

import asyncio
import os

import pytest

from hpcbridge.connectors.errors import JobFileError
from hpcbridge.connectors.transport import LocalTransport


async def test_a_named_pipe_is_refused_and_the_rest_is_read(tmp_path):
    t = LocalTransport(str(tmp_path))
    (tmp_path / "good.log").write_bytes(b"hello")
    os.mkfifo(tmp_path / "pipe.log")
    os.symlink("/etc/passwd", tmp_path / "link.log")
    out = await asyncio.wait_for(t.read_ranges(
        [("pipe.log", 0, 100), ("good.log", 1, 100), ("link.log", 0, 100),
         ("missing.log", 0, 100)]), 5)
    assert isinstance(out[0], JobFileError) and "not a regular file" in str(out[0])
    assert out[1] == b"ello"
    assert isinstance(out[2], JobFileError)
    assert out[3] == b""
    with pytest.raises(JobFileError):
        await t.read_range("pipe.log", 0, 10)


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads a file whatever its mode")
async def test_an_unreadable_file_is_the_jobs_error(tmp_path):
    t = LocalTransport(str(tmp_path))
    (tmp_path / "secret.log").write_bytes(b"x")
    os.chmod(tmp_path / "secret.log", 0)
    [error] = await t.read_ranges([("secret.log", 0, 10)])
    assert isinstance(error, JobFileError) and "permission denied" in str(error)
