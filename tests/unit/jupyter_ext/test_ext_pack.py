"""What the extension's local upload sends (`jupyter_ext.local.pack`): a file as it is, a
folder zipped by the one archive module, with nothing from outside it."""
from __future__ import annotations

import io
import os
import zipfile

from hpcbridge.jupyter_ext.local import pack


def test_a_file_is_sent_as_it_is(tmp_path):
    (tmp_path / "data.csv").write_bytes(b"a,b\n1,2\n")
    out = io.BytesIO()
    assert pack(str(tmp_path / "data.csv"), out) == "data.csv"
    assert out.getvalue() == b"a,b\n1,2\n"


def test_a_folder_is_zipped_without_links_out_of_it(tmp_path):
    folder = tmp_path / "survey"
    (folder / "raw").mkdir(parents=True)
    (folder / "sites.csv").write_text("id\n1\n")
    (folder / "raw" / "day1.txt").write_text("x")
    (tmp_path / "secret.txt").write_text("not yours")
    os.symlink(tmp_path / "secret.txt", folder / "link.txt")
    out = io.BytesIO()
    assert pack(str(folder) + "/", out) == "survey.zip"
    with zipfile.ZipFile(out) as zf:
        names = sorted(zf.namelist())
        assert names == ["raw/day1.txt", "sites.csv"]
        assert zf.read("sites.csv") == b"id\n1\n"
