"""Data safety of `ethoscope-backup run` on the simulated lab (real sshd, rsync, sqlite; issue 6).

Live databases, interrupted transfers, full disks, overlapping passes, host keys, --safe, signals and
a status that never lies. Every test drives the real command line (`/usr/bin/python3 -m ethoscope_rsync run`).
"""
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from ethoscope_rsync.state.store import load_status

from tests.integration.safety_checks import HIDDEN, Backup, db_integrity, descendants, \
    in_flight, partial_files, processes_mentioning, roi_rows, running, sha256, stop_process, visible_files, wait_for

POPULATED_ROWS = 200  # the `lab` fixture's databases


def node_path(backup, device, device_path):
    """Where a file of the device's data tree lands on the node."""
    relative = Path(device_path).relative_to(device.data_root)
    kind, rest = relative.parts[0], Path(*relative.parts[1:])
    return (backup.results if kind == "results" else backup.videos) / rest


def assert_no_torn_file(backup, devices):
    """Every file under its final name on the node has the size of the device's file."""
    for kind, dest in (("results", backup.results), ("videos", backup.videos)):
        for relative, path in visible_files(dest).items():
            if path.name.endswith((".db", ".db-wal", ".db-shm")):
                continue   # databases are rebuilt on the node, checked with integrity_check
            sources = [d.data_root / kind / relative for d in devices if (d.data_root / kind / relative).exists()]
            assert sources, "file on the node that no device has: %s" % path
            assert path.stat().st_size == sources[0].stat().st_size, "truncated file under its final name: %s" % path


def device_state(backup, device):
    entry = backup.device(device)
    return entry["status"], entry["progress"]["status"]


# ---------------------------------------------------------------- 1. live databases
def test_live_database_copies_are_always_intact_and_complete(lab, tmp_path):
    device = lab.devices[0]
    backup = Backup(lab, tmp_path)
    writer = lab.start_writer(device)
    try:
        wait_for(lambda: writer.committed_rows() >= 100, 20, what="the writer to commit rows")
        relative = str(writer.db_path.relative_to(device.data_root / "results"))
        copy = backup.results / relative
        for number in range(10):
            committed_at_start = writer.committed_rows()
            proc = backup.popen("-e", device.name, "--results-only")
            try:
                # "at every moment": the node's copies stay intact while the pass replaces them
                while proc.poll() is None:
                    for db in backup.results.rglob("*.db"):
                        if HIDDEN not in str(db.relative_to(backup.results)):
                            assert db_integrity(db) == "ok", "torn database on the node during pass %d" % number
                    time.sleep(0.05)
                proc.wait(120)
            finally:
                stop_process(proc)
            output = Backup.output(proc)
            assert proc.returncode == 0, output
            dbs = [p for p in backup.results.rglob("*.db") if HIDDEN not in str(p.relative_to(backup.results))]
            assert copy in dbs
            for db in dbs:
                assert db_integrity(db) == "ok", "pass %d: %s fails integrity_check" % (number, db)
            rows = roi_rows(copy)
            verdicts = backup.device(device)["databases"]
            assert rows >= POPULATED_ROWS + committed_at_start, \
                "pass %d: node copy has %d rows, the device had committed %d when the pass started (%s)\n%s" % (
                    number, rows, POPULATED_ROWS + committed_at_start, verdicts.get(relative), output)
            assert relative in verdicts, "no per-database verdict for %s in status.json" % relative
            assert verdicts[relative]["verdict"] == "ok", verdicts[relative]
    finally:
        writer.stop()


# ---------------------------------------------------------------- 2. interrupted transfer
def test_interrupted_transfer_leaves_nothing_torn_and_resumes(make_lab, tmp_path):
    lab = make_lab(n_devices=2, populate=True)
    slow, other = lab.devices
    big = lab.add_video_chunk(slow, 60 << 20)
    lab.rate_limit(slow, "16mbit")
    backup = Backup(lab, tmp_path)
    proc = backup.popen()
    try:
        wait_for(lambda: in_flight(backup.videos, big.name, 2 << 20), 60,
                 what="the big chunk to be partly copied")
        lab.cut_link(slow)
        cut = time.monotonic()
        proc.wait(60)
        elapsed = time.monotonic() - cut
    finally:
        stop_process(proc)
    output = Backup.output(proc)
    assert proc.returncode == 1, output
    assert elapsed < 45, "vanished device given up only after %.0fs (io_timeout=5)" % elapsed
    assert "Traceback" not in output
    status, progress = device_state(backup, slow)
    assert status == "error" and progress == "error"
    assert backup.device(slow)["last_error"]
    assert device_state(backup, other) == ("completed", "completed")
    assert_no_torn_file(backup, lab.devices)
    final = node_path(backup, slow, big)
    assert not final.exists(), "the interrupted chunk appeared under its final name"
    partial = [p for p in partial_files(backup.videos) if p.name == big.name]
    assert partial, "rsync kept no partial file to resume from"
    partial_size = partial[0].stat().st_size

    lab.restore_link(slow)
    lab.clear_rate_limit(slow)
    second = backup.run()
    assert second.returncode == 0, second.stderr
    assert device_state(backup, slow) == ("completed", "completed")
    for kind in ("results", "videos"):
        for path in (slow.data_root / kind).rglob("*"):
            if path.is_file() and not path.name.endswith((".db", ".db-wal", ".db-shm")):
                assert sha256(node_path(backup, slow, path)) == sha256(path), path
    copies = load_status(backup.status_file).devices[slow.id].transfers["videos"].files
    (sent,) = [copy.transferred for path, copy in copies.items() if path.endswith("/" + big.name)]
    assert sent <= big.stat().st_size - partial_size // 2, \
        "resumed transfer sent %d bytes for a %d-byte file of which %d were already on the node" % (
            sent, big.stat().st_size, partial_size)
    assert not partial_files(backup.videos)


# ---------------------------------------------------------------- 3. full disk
@pytest.fixture
def small_disk(tmp_path):
    mount = tmp_path / "small"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=20m,mode=0755", "tmpfs", str(mount)], check=True)
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def test_reserve_short_before_the_pass_refuses_and_damages_nothing(make_lab, tmp_path, small_disk):
    lab = make_lab(n_devices=1, populate=True)
    device = lab.devices[0]
    backup = Backup(lab, tmp_path, results=small_disk / "results", videos=small_disk / "videos")
    assert backup.run().returncode == 0
    before = {rel: sha256(p) for rel, p in visible_files(small_disk).items()}
    assert before
    keep = small_disk / "videos" / "operator-notes.txt"
    keep.write_text("do not touch\n")
    lab.add_video_chunk(device, 1 << 20)
    backup.transfer["min_free"] = "100M"
    backup.write_config()
    result = backup.run()
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    message = backup.device(device)["last_error"]
    for text in (message, result.stderr):
        assert str(small_disk) in text, "message does not name the filesystem: %r" % text
        assert "100.0 MB" in text and "free" in text, "message does not say how much is needed: %r" % text
    assert keep.read_text() == "do not touch\n"
    after = {rel: sha256(p) for rel, p in visible_files(small_disk).items()}
    assert {rel: after.get(rel) for rel in before} == before


def test_disk_filling_during_a_transfer_fails_cleanly(make_lab, tmp_path, small_disk):
    lab = make_lab(n_devices=1, populate=True)
    device = lab.devices[0]
    backup = Backup(lab, tmp_path, results=small_disk / "results", videos=small_disk / "videos")
    assert backup.run().returncode == 0
    before = {rel: sha256(p) for rel, p in visible_files(small_disk).items()}
    for _ in range(3):
        lab.add_video_chunk(device, 8 << 20)   # 24 MB onto a 20 MB filesystem
    result = backup.run()
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    message = backup.device(device)["last_error"]
    assert "full" in message.lower() or "space" in message.lower(), message
    assert str(small_disk) in message, "message does not name the filesystem: %r" % message
    assert_no_torn_file(backup, lab.devices)
    after = {rel: sha256(p) for rel, p in visible_files(small_disk).items()}
    assert {rel: after.get(rel) for rel in before} == before


# ---------------------------------------------------------------- 4. one pass at a time
def test_second_pass_refused_while_one_runs_and_no_stale_lock(make_lab, tmp_path):
    lab = make_lab(n_devices=1, populate=True)
    device = lab.devices[0]
    lab.add_video_chunk(device, 12 << 20)
    lab.rate_limit(device, "16mbit")
    backup = Backup(lab, tmp_path)
    first = backup.popen()
    try:
        wait_for(lambda: backup.status_file.exists() and backup.status()["devices"].get(device.id, {})
                 .get("status") == "running", 30, what="the first pass to be running")
        started = time.monotonic()
        second = backup.run(timeout=30)
        assert time.monotonic() - started < 10
        assert second.returncode == 75, second.stderr
        assert "already running" in second.stderr and "Traceback" not in second.stderr
        assert first.poll() is None, "the refused pass disturbed the running one"
        first.wait(90)
    finally:
        stop_process(first)
    assert first.returncode == 0, Backup.output(first)
    assert backup.run().returncode == 0

    lab.add_video_chunk(device, 12 << 20)
    crashed = backup.popen()
    try:
        wait_for(lambda: in_flight(backup.videos, min_size=1 << 20), 30, what="the pass to be copying")
        os.kill(crashed.pid, signal.SIGKILL)
        crashed.wait(10)
    finally:
        stop_process(crashed)
        for pid in processes_mentioning(str(backup.videos)):   # the killed pass's orphaned rsync
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    lab.clear_rate_limit(device)
    again = backup.run()
    assert again.returncode != 75, "a killed pass left a stale lock: " + again.stderr
    assert again.returncode == 0, again.stderr


# ---------------------------------------------------------------- 5. host keys
def test_changed_host_key_is_refused_until_forgotten(lab, tmp_path):
    changed, other = lab.devices
    backup = Backup(lab, tmp_path)
    assert backup.run().returncode == 0
    known = backup.known_hosts.read_text()
    for device in lab.devices:
        assert device.host_key_pub.read_text().split()[1] in known, "first contact did not record the key"
    lab.regenerate_host_key(changed)
    lab.add_video_chunk(other, 10000)
    result = backup.run()
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert device_state(backup, changed) == ("error", "error")
    assert device_state(backup, other) == ("completed", "completed")
    message = backup.device(changed)["last_error"]
    assert "host key" in message.lower(), message
    assert "forget-host" in message or "forget-host" in result.stderr, \
        "the refusal does not say what to do: %r / %r" % (message, result.stderr[-500:])
    assert changed.host_key_pub.read_text().split()[1] not in backup.known_hosts.read_text()

    forget = backup.run(changed.name, command="forget-host")
    assert forget.returncode == 0, forget.stdout + forget.stderr
    assert backup.run().returncode == 0
    assert device_state(backup, changed) == ("completed", "completed")
    assert changed.host_key_pub.read_text().split()[1] in backup.known_hosts.read_text()


# ---------------------------------------------------------------- 6. --safe
def rewrite(path, size):
    old = path.read_bytes()
    path.write_bytes(os.urandom(size))
    return old


def test_safe_keeps_replaced_versions_aside(make_lab, tmp_path):
    lab = make_lab(n_devices=1, populate=True)
    device = lab.devices[0]
    backup = Backup(lab, tmp_path)
    assert backup.run().returncode == 0
    chunk = sorted((device.data_root / "videos").rglob("*.h264"))[0]
    relative = chunk.relative_to(device.data_root / "videos")
    old = rewrite(chunk, 50000)
    assert backup.run("-s").returncode == 0
    assert (backup.videos / relative).read_bytes() == chunk.read_bytes()
    kept = list((backup.videos / HIDDEN / "replaced").glob("*/" + str(relative)))
    assert len(kept) == 1, "old version not kept aside: %s" % list((backup.videos / HIDDEN).rglob("*"))
    assert kept[0].read_bytes() == old

    rewrite(chunk, 40000)
    assert backup.run().returncode == 0
    assert (backup.videos / relative).read_bytes() == chunk.read_bytes()
    assert list((backup.videos / HIDDEN / "replaced").glob("*/" + str(relative))) == kept


# ---------------------------------------------------------------- 7. signals
def test_sigterm_stops_cleanly(make_lab, tmp_path):
    lab = make_lab(n_devices=2, populate=True)
    slow = lab.devices[0]
    big = lab.add_video_chunk(slow, 40 << 20)
    lab.rate_limit(slow, "16mbit")
    backup = Backup(lab, tmp_path, transfer={"io_timeout": 30})
    proc = backup.popen()
    try:
        wait_for(lambda: in_flight(backup.videos, big.name, 1 << 20), 60,
                 what="the transfer to be underway")
        children = descendants(proc.pid)
        assert children, "no rsync/ssh children seen"
        proc.send_signal(signal.SIGTERM)
        sent = time.monotonic()
        proc.wait(30)
        elapsed = time.monotonic() - sent
    finally:
        stop_process(proc)
    output = Backup.output(proc)
    assert elapsed < 15, "SIGTERM took %.1fs" % elapsed
    assert proc.returncode != 0, output
    assert "Traceback" not in output
    status = backup.status()
    assert status["run"]["outcome"] == "interrupted", status["run"]
    for device in lab.devices:
        entry = status["devices"][device.id]
        assert entry["status"] != "running" and entry["progress"]["status"] != "running", entry["progress"]
        assert entry["ended"] != 0
    alive = [pid for pid in children if running(pid)]
    leftovers = subprocess.run(["ps", "-eo", "pid,args"], capture_output=True, text=True).stdout
    assert not alive, "children left running after SIGTERM:\n" + "\n".join(
        line for line in leftovers.splitlines() if line.split()[0] in {str(p) for p in alive})
    assert not [line for line in leftovers.splitlines() if str(backup.base) in line]
    assert_no_torn_file(backup, lab.devices)


# ---------------------------------------------------------------- 8. status never lies
def test_failed_device_shows_error_until_a_later_success(lab, tmp_path):
    down, other = lab.devices
    backup = Backup(lab, tmp_path)
    lab.cut_link(down)
    try:
        result = backup.run()
    finally:
        lab.restore_link(down)
    assert result.returncode == 1, result.stderr
    entry = backup.device(down)
    assert (entry["status"], entry["progress"]["status"]) == ("error", "error")
    assert entry["last_error"] and entry["ended"] > 0 and not entry["processing"]
    assert entry["progress"]["backup_status"] < 100
    assert device_state(backup, other) == ("completed", "completed")
    assert backup.status()["run"]["outcome"] == "failed"
    table = backup.run(command="status")
    assert table.returncode == 1                 # a failing device is a problem (documented exit code)
    assert any(down.name in line and "error" in line for line in table.stdout.splitlines()), table.stdout

    second = backup.run()
    assert second.returncode == 0, second.stderr
    entry = backup.device(down)
    assert (entry["status"], entry["progress"]["status"]) == ("completed", "completed")
    assert entry["last_success"] > 0
    assert backup.status()["run"]["outcome"] == "success"
