"""`ethoscope-backup daemon`: passes on an interval and the status URLs from one process."""
import json
import signal
import socket
import subprocess
import time
import urllib.request

from tests.integration.runner_helpers import PYTHON, ROOT, Node, env_without_listen


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
        deadline, passes = time.monotonic() + 60, set()
        while time.monotonic() < deadline and len(passes) < 2:
            try:
                status = get_json(f"http://127.0.0.1:{port}/status")
                root = get_json(f"http://127.0.0.1:{port}/")
            except OSError:
                time.sleep(0.2)
                continue
            run = status.get("run", {})
            if run.get("outcome") == "success":
                passes.add(run.get("started"))
                assert root["last_backup"]
                assert {d.id for d in lab.devices} <= set(status["devices"])
            time.sleep(0.2)
        assert len(passes) >= 2, "the daemon did not complete two passes within 60 s"
    finally:
        daemon.send_signal(signal.SIGTERM)
        output, _ = daemon.communicate(timeout=30)
    assert daemon.returncode == 0, output
    assert "Traceback" not in output
