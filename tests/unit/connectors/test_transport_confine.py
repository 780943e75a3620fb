"""confine(): every path a transport is given stays under the HPC's work root."""
import pytest

from hpcbridge.archive import UnsafePath
from hpcbridge.connectors.errors import ConnectorError, PathOutsideWorkRoot
from hpcbridge.connectors.transport import confine

ROOT = "/home/hpcuser/hpcbridge"


@pytest.mark.parametrize(("path", "expected"), [
    ("job1", f"{ROOT}/job1"),
    ("job1/in/data.csv", f"{ROOT}/job1/in/data.csv"),
    ("job1/./x/../y", f"{ROOT}/job1/y"),
    (".", ROOT),
    ("", ROOT),
    (f"{ROOT}/job2/out", f"{ROOT}/job2/out"),
])
def test_confine_inside(path, expected):
    assert confine(ROOT, path) == expected


@pytest.mark.parametrize("path", ["..", "../x", "job/../../x", "a/../../hpcbridge2",
                                  "/etc/passwd", "/home/hpcuser", "/home/hpcuser/hpcbridge2",
                                  "/home/hpcuser/hpcbridge/../.ssh/authorized_keys", "/"])
def test_confine_refuses_escapes(path):
    with pytest.raises(PathOutsideWorkRoot):
        confine(ROOT, path)


def test_confine_root_with_trailing_slash():
    assert confine(ROOT + "/", "job") == f"{ROOT}/job"
    assert confine(ROOT + "/", ".") == ROOT
    with pytest.raises(PathOutsideWorkRoot):
        confine(ROOT + "/", "../x")


def test_an_escape_is_both_a_connector_error_and_an_unsafe_path():
    with pytest.raises(PathOutsideWorkRoot) as caught:
        confine(ROOT, "../x")
    assert isinstance(caught.value, ConnectorError) and isinstance(caught.value, UnsafePath)
    assert "outside the work root" in str(caught.value)
