"""`ethoscope-backup daemon`: passes on an interval and the status URLs from one process."""
import json
import signal
import socket
import subprocess
import time
import urllib.request

from tests.integration.backup_node import PYTHON, ROOT, Node, env_without_listen


def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def get_json(url):
    with urllib.request.urlopen(url, timeout=5) as answer:
        return json.loads(answer.read())


def test_daemon_runs_passes_and_serves_status(lab, tmp_path):
    node = Node(lab, tmp_path)
    port = free_port()
    daemon = subprocess.Popen([PYTHON, "-m", "ethoscope_rsync", "daemon", "-c", str(node.conf),
                               "--listen", f"127.0.0.1:{port}", "--interval", "1"],
                              cwd=ROOT, env=env_without_listen(), stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True)
    try:
        # each device on its own clock: copied again a second after its own last copy, in one scheduled pass
        deadline, copies, shown = time.monotonic() + 60, {d.id: set() for d in lab.devices}, False
        while time.monotonic() < deadline and (min(len(c) for c in copies.values()) < 2 or not shown):
            try:
                status = get_json(f"http://127.0.0.1:{port}/status")
                root = get_json(f"http://127.0.0.1:{port}/")
            except OSError:
                time.sleep(0.2)
                continue
            for key, device in status.get("devices", {}).items():
                if key in copies and device["status"] == "completed":
                    copies[key].add(device["started"])
            shown = shown or bool(root["last_backup"])
            time.sleep(0.2)
        assert min(len(c) for c in copies.values()) >= 2, f"each device not copied twice within 60 s: {copies}"
        assert shown, "GET / showed no last backup"
    finally:
        daemon.send_signal(signal.SIGTERM)
        output, _ = daemon.communicate(timeout=30)
    assert daemon.returncode == 0, output
    assert "Traceback" not in output
