import subprocess
import sys

from hpcbridge import __version__
from hpcbridge.cli import main


def test_version(capsys):
    try:
        main(["--version"])
    except SystemExit as exc:
        assert exc.code == 0
    assert capsys.readouterr().out.strip() == f"hpcbridge {__version__}"


def test_help_lists_commands():
    out = subprocess.run([sys.executable, "-m", "hpcbridge.cli", "--help"], capture_output=True,
                         text=True, check=True).stdout
    for command in ("server", "maintainer", "demo", "submit", "logs", "cancel", "download"):
        assert command in out


def test_server_generates_config(tmp_path):
    subprocess.run([sys.executable, "-m", "hpcbridge.cli", "server", "--generate-config",
                    "--config", str(tmp_path / "hpcbridge_config.py")], check=True,
                   capture_output=True)
    text = (tmp_path / "hpcbridge_config.py").read_text()
    assert "c.Site.hpcs" in text and "c.HubAuthenticator.cache_ttl" in text
