"""README's first command, `make demo`, as a newcomer runs it (here beside any demo of the user's:
its own folder, lab name and port): a simulated lab, a real pass with the real CLI, the status
service answering with every device and database, and `--down` removing it all."""
import json
import os
import socket
import subprocess
import urllib.request

import pytest

from tests.integration.conftest import _unique_name
from tests.integration.backup_node import PYTHON, ROOT

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the demo needs root")


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_the_demo_backs_up_every_device_and_serves_the_status(tmp_path):
    base, name, port = tmp_path / "demo", _unique_name("d"), _free_port()
    where = ["--base", str(base), "--name", name]
    try:
        up = subprocess.run([PYTHON, "-m", "tests.lab.demo", *where, "--listen", f"127.0.0.1:{port}",
                             "--chunk-mb", "1"], cwd=ROOT, capture_output=True, text=True, timeout=300)
        assert up.returncode == 0, up.stdout + up.stderr
        assert "pass finished with exit code 0; 30 video files copied." in up.stdout, up.stdout
        assert f"--down --base {base} --name {name}" in up.stdout
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/status", timeout=10) as answer:
            devices = json.load(answer)["devices"]
        assert sorted(d["name"] for d in devices.values()) == ["ETHOSCOPE_001", "ETHOSCOPE_002", "ETHOSCOPE_003"]
        for device in devices.values():
            assert device["progress"]["status"] == "completed"
            assert len(device["synced"]["results"]["detailed_files"]) == 2          # its two databases
            assert device["synced"]["videos"]["local_files"] == 10
    finally:
        down = subprocess.run([PYTHON, "-m", "tests.lab.demo", "--down", *where], cwd=ROOT, capture_output=True,
                              text=True, timeout=120)
    assert down.returncode == 0 and not base.exists()
    with pytest.raises(OSError):
        urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2)
