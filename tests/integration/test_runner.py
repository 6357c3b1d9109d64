"""`ethoscope-backup run` against real sshd/rsync on simulated ethoscopes (tests/lab)."""
import contextlib
import json
import shutil
import tempfile
from pathlib import Path

import pytest

from tests.integration.backup_node import Node, db_rows, inodes, integrity, tree_digest


@pytest.fixture
def node(lab, tmp_path):
    return Node(lab, tmp_path)


def device_tree(device, kind):
    return device.data_root / kind


def test_first_pass_copies_everything_in_upstream_layout(lab, node):
    result = node.run()
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    for device in lab.devices:
        videos = tree_digest(device_tree(device, "videos"))
        assert videos and all(k.startswith(f"{device.id}/{device.name}/") for k in videos)
        node_videos = tree_digest(node.videos)
        assert all(node_videos[k] == v for k, v in videos.items())
        results = tree_digest(device_tree(device, "results"), skip_db=True)
        assert all(tree_digest(node.results)[k] == v for k, v in results.items())
        for db in device_tree(device, "results").rglob("*.db"):
            copy = node.results / db.relative_to(device_tree(device, "results"))
            assert integrity(copy) == "ok"
            assert db_rows(copy) == db_rows(db)
    status = node.status()
    assert status["run"]["outcome"] == "success" and status["status"] == "idle"
    assert status["last_backup"]
    for device in lab.devices:
        entry = status["devices"][device.id]
        assert entry["name"] == device.name and entry["progress"]["status"] == "completed"
        assert entry["progress"]["backup_status"] == 100.0 and entry["ended"] > 0
        assert entry["synced"]["videos"]["local_files"] == len(tree_digest(device_tree(device, "videos")))
        assert entry["transfer_details"]["videos"]["total_files"] > 0   # named in /status/<device> (not /status)
        assert all(v["verdict"] == "ok" for v in entry["databases"].values()) and entry["databases"]
        databases = [p.name for p in device_tree(device, "results").rglob("*.db")]
        assert set(databases) <= set(entry["transfer_details"]["results"]["files"])
        assert entry["synced"]["results"]["local_files"] == len(databases)
    # decoys (ETHOSCOPE_000, an offline device) are never contacted
    assert set(status["devices"]) == {d.id for d in lab.devices}


def test_second_pass_copies_nothing_and_new_chunks_are_picked_up(lab, node):
    assert node.run().returncode == 0
    before = {**inodes(node.results), **inodes(node.videos)}
    second = node.run()
    assert second.returncode == 0, second.stderr
    assert node.status()["run"]["files_received"] == 0
    assert {**inodes(node.results), **inodes(node.videos)} == before          # not a single file rewritten on the node
    chunk = lab.add_video_chunk(lab.devices[0], 100_000)
    third = node.run()
    assert third.returncode == 0
    assert node.status()["run"]["files_received"] == 1
    copied = node.videos / chunk.relative_to(lab.devices[0].data_root / "videos")
    assert copied.read_bytes() == chunk.read_bytes()


def test_select_devices_and_kinds(lab, node):
    first, second = lab.devices
    result = node.run("-e", f"{first.number:03d}" if hasattr(first, "number") else str(first.index),
                      "--videos-only")
    assert result.returncode == 0, result.stderr
    assert set(node.status()["devices"]) == {first.id}
    assert (node.videos / first.id).is_dir() and not (node.videos / second.id).exists()
    assert not node.results.exists() or not any(node.results.rglob("*.db"))
    result = node.run("-e", f"ETHOSCOPE_{second.index:03d},{first.id}", "--results-only")
    assert result.returncode == 0, result.stderr
    assert any((node.results / second.id).rglob("*.db")) and any((node.results / first.id).rglob("*.db"))
    assert not (node.videos / second.id).exists()


def test_dry_run_lists_and_changes_nothing(lab, node):
    result = node.run("-n")
    assert result.returncode == 0, result.stderr
    assert "would be copied" in result.stdout
    some_chunk = next((lab.devices[0].data_root / "videos").rglob("*.h264")).name
    assert some_chunk in result.stdout
    assert not node.results.exists() and not node.videos.exists() and not node.status_file.exists()


def test_jobs_and_bwlimit(lab, node):
    result = node.run("-j", "1", "--bwlimit", "4M")
    assert result.returncode == 0, result.stderr
    assert node.status()["run"]["devices_done"] == 2
    for bad in (["-j", "0"], ["--bwlimit", "lots"]):
        refused = node.run(*bad)
        assert refused.returncode == 2 and "Traceback" not in refused.stderr
        assert len(refused.stderr.strip().splitlines()) == 1


def test_nothing_to_do_and_status_command(lab, node):
    lab.node.set_mode("empty")
    result = node.run()
    assert result.returncode == 0, result.stderr
    assert node.status()["run"]["outcome"] == "nothing to do"
    lab.node.set_mode("ok")
    assert node.run().returncode == 0
    table = node.run(command="status")
    assert table.returncode == 0
    assert all(d.name in table.stdout for d in lab.devices) and "completed" in table.stdout
    as_json = json.loads(node.run("--json", command="status").stdout)
    assert set(as_json["status"]["devices"]) == {d.id for d in lab.devices}


def test_check_command_reports_each_device(lab, node):
    result = node.run(command="check")
    assert result.returncode == 0, result.stdout + result.stderr
    for device in lab.devices:
        assert f"ok    {device.name}" in result.stdout
    lab.stop_device(lab.devices[1])
    result = node.run(command="check")
    assert result.returncode == 1 and f"FAIL  {lab.devices[1].name}" in result.stdout


def test_selected_device_not_found_fails(lab, node):
    result = node.run("-e", "042")
    assert result.returncode == 1
    assert "ETHOSCOPE_042" in result.stderr and "not found" in result.stderr
    assert node.status()["run"]["outcome"] == "failed"


def test_no_discovery_source_at_all_fails(lab, node):
    node.conf.write_text(node.conf.read_text().replace(f"server = {lab.node_address}",
                                                       "server =\nmdns_timeout = 0.5"))
    result = node.run()
    assert result.returncode == 1 and "no node server configured" in result.stderr


def test_root_runs_as_the_owner_of_the_state_dir(lab):
    """On a packaged node root's pass runs as the service user: nothing it leaves is root's."""
    with _service_users_node(lab, "runas-") as (node, account):
        _check_run_as(node, account)


@contextlib.contextmanager
def _service_users_node(lab, prefix):
    """A node whose state belongs to the lab's service user, as on a packaged node: (node, account).
    Under /var/tmp with a short name: traversable by that user, and short enough for ssh's folder."""
    import os
    import pwd
    account = pwd.getpwnam("ethoscope")
    base = Path(tempfile.mkdtemp(dir="/var/tmp", prefix=prefix))
    try:
        os.chmod(base, 0o755)
        node = Node(lab, base)
        node.state.mkdir()
        for path in (base, node.state, node.conf):
            os.chown(path, account.pw_uid, account.pw_gid)
        yield node, account
    finally:
        shutil.rmtree(base)


def test_what_a_killed_pass_left_is_removed_by_the_next(lab):
    """SIGKILL of a pass root started on a packaged node (the service user's state): its copy of the
    SSH key (in the user's private runtime folder, never /tmp) and its shared-connection folder stay;
    the next pass removes both."""
    import os
    import signal
    import subprocess
    from tests.integration.backup_node import PYTHON, ROOT
    from tests.polling import wait_for
    with _service_users_node(lab, "k-") as (node, _):
        lab.cut_link(lab.devices[0])
        try:
            killed = subprocess.Popen([PYTHON, "-m", "ethoscope_rsync", "run", "-c", str(node.conf)], cwd=ROOT,
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
            runtime = node.status_file.parent
            left = lambda: (sorted(runtime.glob(f"private/credentials-{killed.pid}-*")),   # noqa: E731
                            sorted(runtime.glob(f"ssh-{killed.pid}-*")))
            wait_for(lambda: all(left()), 60, interval=0.2, what="the pass's key copy and ssh folder")
            os.killpg(killed.pid, signal.SIGKILL)
            killed.wait(10)
            assert all(left()), "SIGKILL left nothing: the test proves nothing"
        finally:
            lab.restore_link(lab.devices[0])
        assert not list(Path("/tmp").glob(f"*credentials-{killed.pid}-*"))
        result = node.run()
        assert result.returncode == 0, result.stderr
        assert left() == ([], [])
        assert not list(runtime.glob("private/*")) and not list(runtime.glob("ssh-*"))


def _check_run_as(node, account):
    result = node.run()
    assert result.returncode == 0, result.stderr
    made = [p for p in (node.base / "results", node.base / "videos", node.state, node.status_file.parent)
            for p in [p, *p.rglob("*")]]
    assert made and all(p.stat().st_uid == account.pw_uid for p in made)
    assert not list(node.status_file.parent.glob("private/*"))          # its key copy is gone


def test_mdns_fallback_when_the_node_server_is_down(lab, node):
    lab.announce_mdns()
    lab.node.set_mode("down")
    result = node.run()
    assert result.returncode == 0, result.stderr
    assert "unreachable" in result.stderr and "mDNS" in result.stderr
    assert {d.id for d in lab.devices} <= set(node.status()["devices"])
    for device in lab.devices:
        assert tree_digest(device.data_root / "videos").items() <= tree_digest(node.videos).items()


def test_systemd_notifications_and_stale_warning(lab, node):
    """STATUS= lines reach a real NOTIFY_SOCKET; a device failing since ever is flagged stale."""
    import os
    import socket
    import subprocess
    from tests.integration.backup_node import PYTHON, ROOT
    # where systemd's own socket is (/run/systemd/notify): a socket's path must stay under 108 bytes,
    # whatever TMPDIR the tests run with
    short = Path(tempfile.mkdtemp(prefix="notify-", dir="/run"))
    path = short / "sock"
    node.conf.write_text(node.conf.read_text().replace("[ssh]\n", "[ssh]\nconnect_timeout = 2\n")
                         .replace("retry_delay = 0.5\n", "retry_delay = 0.5\nretries = 0\n"))
    messages = []
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as listener:
        listener.bind(str(path))
        listener.settimeout(0.2)
        lab.stop_device(lab.devices[1])
        pass_ = subprocess.Popen([PYTHON, "-m", "ethoscope_rsync", "run", "-c", str(node.conf)], cwd=ROOT,
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                 env=dict(os.environ, NOTIFY_SOCKET=str(path)))
        while pass_.poll() is None or messages[-1:] != ["(end)"]:     # read as systemd does
            try:
                messages.append(listener.recv(4096).decode())
            except socket.timeout:
                if pass_.poll() is not None:
                    messages.append("(end)")
        _, stderr = pass_.communicate(timeout=60)
    shutil.rmtree(short)
    result = subprocess.CompletedProcess(pass_.args, pass_.returncode, "", stderr)
    assert result.returncode == 1
    assert any(m.startswith("STATUS=") and "devices done" in m for m in messages), messages
    assert any("failed" in m for m in messages)
    assert f"{lab.devices[1].name}: STALE: no successful backup for ever" in result.stderr
    status = node.status()["devices"]
    assert status[lab.devices[1].id]["stale"] and not status[lab.devices[0].id]["stale"]


def test_static_devices_without_a_node_server(lab, node):
    first = lab.devices[0]
    text = node.conf.read_text().replace(f"server = {lab.node_address}", "server =")
    node.conf.write_text(text + f"[devices]\n{first.name} = {first.ip}\n")
    result = node.run()
    assert result.returncode == 0, result.stderr
    assert "from config" in result.stderr
    # the device told its machine id at first contact: the node's lookups by machine id find it
    device = node.status()["devices"]
    assert set(device) == {first.id} and device[first.id]["name"] == first.name
    assert tree_digest(first.data_root / "videos").items() <= tree_digest(node.videos).items()
    second = node.run()
    assert second.returncode == 0, second.stderr
    assert set(node.status()["devices"]) == {first.id} and node.status()["run"]["files_received"] == 0
    # a [devices] typo: another name at the address of the device pinned above is refused, and the
    # pin (name <-> machine id <-> host key) stays the first device's
    node.conf.write_text(text + f"[devices]\nETHOSCOPE_777 = {first.ip}\n")
    typo = node.run()
    assert typo.returncode == 1 and f"which is {first.name}'s: not backed up" in typo.stderr, typo.stderr
    history = json.loads((node.state / "history.json").read_text())
    assert history["devices"][first.id]["name"] == first.name
