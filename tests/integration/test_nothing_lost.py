"""Nothing lost on the paths next to the ones that work (issue 11), each fault injected for real on
the simulated lab: a pass killed during a database recovery, a copy that cannot be taken, an
unreadable file, a destination that cannot be made, a long TMPDIR, a vanishing device, SIGTERM to a
pass of 150 devices, old versions and interrupted files that must not pile up."""
import os
import signal
import sqlite3
import time
from pathlib import Path

from tests.integration.safety_checks import HIDDEN, PARTIAL, Backup, in_flight, partial_files, roi_rows, \
    stop_process, wait_for

DEFAULTS = {"io_timeout": 60, "retries": 2, "retry_delay": 5, "min_free": "0"}    # as shipped


def add_rows(db: Path, rows: int, blob: int = 0) -> None:
    """Append `rows` tracking rows (and a snapshot of `blob` bytes) as the device's tracker would."""
    con = sqlite3.connect(db, isolation_level=None)
    try:
        con.execute("BEGIN")
        start = con.execute("SELECT coalesce(max(t), 0) FROM ROI_1").fetchone()[0]
        con.executemany("INSERT INTO ROI_1 (t, x, y, w, h, phi, is_inferred, has_interacted, xy_dist_log10x1000)"
                        " VALUES (?, 1, 2, 3, 4, 5, 0, 0, 6)", [(start + 40 * (n + 1),) for n in range(rows)])
        if blob:
            con.execute("INSERT INTO IMG_SNAPSHOTS (t, img) VALUES (?, ?)", (start, os.urandom(blob)))
        con.execute("COMMIT")
    finally:
        con.close()


def node_copy(backup, lab, device) -> Path:
    db = lab.newest_db(device)
    return backup.results / db.relative_to(device.data_root / "results")


def device_entry(backup, device):
    return backup.status()["devices"][device.id]


# ---------------------------------------------------------------- 1. database copies by state

def test_a_recovery_killed_midway_is_finished_by_the_next_pass(lab, tmp_path):
    """The raw copy arrived, then the pass died while putting it in place: the next pass sees no
    change on the device, and still recovers it (and removes the killed recovery's leftovers)."""
    device = lab.devices[0]
    backup = Backup(lab, tmp_path, transfer={"retries": 0})
    assert backup.run().returncode == 0
    db = lab.newest_db(device)
    add_rows(db, 1000, blob=120 << 20)            # a big change: its recovery takes a while
    expected = roi_rows(db)
    copy = node_copy(backup, lab, device)
    proc = backup.popen("-e", device.name)
    try:
        wait_for(lambda: any(p.name.startswith(f".{copy.name}.recover-") for p in copy.parent.iterdir()),
                 120, interval=0.005, what="the database's recovery to start")
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)
    finally:
        stop_process(proc)
    assert roi_rows(copy) < expected                  # the killed recovery replaced nothing
    second = backup.run("-e", device.name)
    assert second.returncode == 0, second.stderr
    assert roi_rows(copy) == expected, "the copy that arrived in the killed pass was never put in place"
    assert not [p for p in copy.parent.iterdir() if ".recover-" in p.name]
    assert device_entry(backup, device)["progress"]["status"] == "completed"


def test_a_copy_that_cannot_be_taken_fails_the_device_every_pass_until_it_can(lab, tmp_path):
    device = lab.devices[0]
    backup = Backup(lab, tmp_path, transfer={"retries": 0})
    assert backup.run().returncode == 0
    db, copy = lab.newest_db(device), node_copy(backup, lab, device)
    add_rows(copy, 100)                     # the node's copy holds more rows than the device's will
    add_rows(db, 50)
    for attempt in (1, 2, 3):               # the device does not change after the first of these
        result = backup.run("-e", device.name)
        assert result.returncode == 1, (attempt, result.stderr)
        entry = device_entry(backup, device)
        assert entry["status"] == "error", attempt
        assert "refused:" in entry["last_error"] and "rows <" in entry["last_error"], (attempt, entry["last_error"])
    add_rows(db, 100)
    assert backup.run("-e", device.name).returncode == 0
    assert roi_rows(copy) == roi_rows(db) == 350
    assert device_entry(backup, device)["status"] == "completed"


def test_a_database_the_device_cannot_read_fails_the_device_and_keeps_the_node_s_copy(lab, tmp_path):
    """The device's database changed, then cannot be read there (as with an SD card's read errors;
    here root's 0600): the pass does not call it gone and the device completed. The device fails
    on every pass, naming it, the node keeps its copy, and the copy is taken once it can be read."""
    device = lab.devices[0]
    backup = Backup(lab, tmp_path, transfer={"retries": 0})
    assert backup.run().returncode == 0
    db, copy = lab.newest_db(device), node_copy(backup, lab, device)
    before, owner = roi_rows(copy), db.stat()
    add_rows(db, 50)
    os.chown(db, 0, 0)
    os.chmod(db, 0o600)
    try:
        for attempt in (1, 2):
            result = backup.run("-e", device.name)
            assert result.returncode == 1, (attempt, result.stderr)
            entry = device_entry(backup, device)
            assert entry["status"] == "error" and "not copied from the device" in entry["last_error"], entry
            assert db.name in entry["last_error"] and "Permission denied" in entry["last_error"], entry["last_error"]
            assert roi_rows(copy) == before
    finally:
        os.chown(db, owner.st_uid, owner.st_gid)
        os.chmod(db, owner.st_mode & 0o7777)
    assert backup.run("-e", device.name).returncode == 0
    assert roi_rows(copy) == roi_rows(db) == before + 50
    assert device_entry(backup, device)["status"] == "completed"


# ---------------------------------------------------------------- 2. what a device or the node refuses

def test_an_unreadable_file_is_named_and_everything_else_is_copied(lab, tmp_path):
    device = lab.devices[0]
    secret = lab.newest_db(device).parent / "root-only.txt"
    secret.write_text("not for the backup user\n")
    os.chown(secret, 0, 0)
    os.chmod(secret, 0o600)
    backup = Backup(lab, tmp_path)
    result = backup.run()
    assert result.returncode == 1, result.stderr
    entry = device_entry(backup, device)
    assert entry["status"] == "error"
    assert "root-only.txt" in entry["last_error"] and "Permission denied" in entry["last_error"]
    assert "ssh authentication" not in entry["last_error"] and "everything else was copied" in entry["last_error"]
    assert roi_rows(node_copy(backup, lab, device)) == roi_rows(lab.newest_db(device))
    videos = [p for p in (device.data_root / "videos").rglob("*") if p.is_file()]
    assert videos and all((backup.videos / p.relative_to(device.data_root / "videos")).exists() for p in videos)
    assert device_entry(backup, lab.devices[1])["status"] == "completed"


def test_a_destination_that_cannot_be_made_is_one_clear_line(lab, tmp_path):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the destination's parent should be\n")
    backup = Backup(lab, tmp_path / "work", results=blocker / "results", videos=blocker / "videos")
    result = backup.run()
    assert result.returncode == 1 and "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("E ")]
    assert len(errors) == 1 and f"cannot create the results destination {blocker}/results" in errors[0], result.stderr
    assert not any("ssh" in line for line in result.stderr.splitlines()), "a device was contacted"


def test_a_long_tmpdir_and_the_tool_s_own_words(lab, tmp_path):
    """ssh's shared-connection socket has a short path whatever TMPDIR is; a failure says what
    ssh said, not only rsync's exit code."""
    long_tmp = tmp_path / ("t" * 60)
    long_tmp.mkdir()
    base = tmp_path / ("w" * 80)
    backup = Backup(lab, base)
    env_tmp = os.environ.get("TMPDIR")
    os.environ["TMPDIR"] = str(long_tmp)
    try:
        result = backup.run()
        assert result.returncode == 0, result.stderr
        lab.stop_device(lab.devices[1])
        result = backup.run()
    finally:
        if env_tmp is None:
            os.environ.pop("TMPDIR")
        else:
            os.environ["TMPDIR"] = env_tmp
    assert result.returncode == 1
    error = device_entry(backup, lab.devices[1])["last_error"]
    assert error.startswith("device unreachable: ssh: connect to host") \
        and "port 22: Connection timed out" in error, error


# ---------------------------------------------------------------- 3. giving up and stopping promptly

def test_a_device_cut_mid_transfer_is_given_up_within_a_minute(make_lab, tmp_path):
    lab = make_lab(n_devices=2, populate=True)
    slow, other = lab.devices
    big = lab.add_video_chunk(slow, 80 << 20)
    lab.rate_limit(slow, "16mbit")
    backup = Backup(lab, tmp_path, transfer=DEFAULTS, ssh={"connect_timeout": 10})
    proc = backup.popen()
    try:
        wait_for(lambda: in_flight(backup.videos, big.name, 2 << 20), 90, what="the big chunk to be partly copied")
        lab.cut_link(slow)
        cut = time.monotonic()
        wait_for(lambda: backup.status_file.exists() and backup.status()["devices"][slow.id]["status"] == "error",
                 120, what="the cut device to be given up")
        given_up = time.monotonic() - cut
        proc.wait(60)
    finally:
        stop_process(proc)
    print(f"the cut device was given up {given_up:.1f} s after its link was cut")
    assert given_up <= 60, f"the vanished device was given up {given_up:.0f} s after its link was cut"
    assert proc.returncode == 1 and device_entry(backup, other)["status"] == "completed"


def test_sigterm_stops_a_pass_of_150_devices_in_time(make_lab, tmp_path):
    lab = make_lab(n_devices=150, decoys=False)
    for device in lab.devices:
        lab.populate(device, experiments=1, db_rows=20, video_chunks=1, chunk_bytes=4 << 20, mp4=False)
        lab.rate_limit(device, "8mbit")
    backup = Backup(lab, tmp_path, transfer={"jobs": 16})
    proc = backup.popen()
    try:
        wait_for(lambda: backup.status_file.exists() and sum(
            d["status"] == "running" for d in backup.status()["devices"].values()) >= 8, 120,
            what="a pass with devices running")
        os.killpg(proc.pid, signal.SIGTERM)
        stopped = time.monotonic()
        proc.wait(90)
        took = time.monotonic() - stopped
    finally:
        stop_process(proc)
    print(f"the pass of 150 devices stopped {took:.1f} s after SIGTERM")
    assert took < 60, f"the pass took {took:.0f} s to stop (the unit's TimeoutStopSec is 1 min)"
    assert proc.returncode == -signal.SIGTERM, Backup.output(proc)[-2000:]
    status = backup.status()
    assert status["run"]["outcome"] == "interrupted" and status["status"] == "idle"
    assert not [k for k, d in status["devices"].items() if d["status"] in ("running", "queued")]
    never_started = [d for d in lab.devices if status["devices"][d.id]["last_error"].startswith("not started")]
    assert len(never_started) > 100
    contacted = [d.name for d in never_started if "Accepted publickey" in d.sshd_log.read_text(errors="replace")]
    assert not contacted, f"devices contacted after the stop: {contacted[:5]}"


# ---------------------------------------------------------------- 4. nothing piles up

def test_old_versions_kept_by_safe_go_after_their_time(lab, tmp_path):
    backup = Backup(lab, tmp_path, transfer={"keep_replaced_days": 7})
    assert backup.run("-s").returncode == 0
    replaced = backup.videos / HIDDEN / "replaced"
    old, recent = replaced / "2020-01-01_00-00-00", replaced / time.strftime("%Y-%m-%d_%H-%M-%S")
    for folder in (old, recent):
        (folder / "x").mkdir(parents=True)
        (folder / "x" / "old.h264").write_bytes(b"v1")
    foreign = replaced / "operator-notes"
    foreign.mkdir()
    assert backup.run("-s").returncode == 0
    assert not old.exists() and recent.exists() and foreign.exists()


def test_an_interrupted_file_the_device_deleted_does_not_stay(make_lab, tmp_path):
    lab = make_lab(n_devices=1, populate=True)
    device = lab.devices[0]
    big = lab.add_video_chunk(device, 40 << 20)
    lab.rate_limit(device, "16mbit")
    backup = Backup(lab, tmp_path, transfer={"retries": 2})       # a link just back up may need a second try
    proc = backup.popen()
    try:
        wait_for(lambda: in_flight(backup.videos, big.name, 1 << 20), 90, what="the chunk to be partly copied")
        lab.cut_link(device)
        proc.wait(90)
    finally:
        stop_process(proc)
    assert any(p.name == big.name for p in partial_files(backup.videos))
    big.unlink()                                    # the device deleted it meanwhile
    lab.restore_link(device)
    lab.clear_rate_limit(device)
    assert backup.run().returncode == 0
    assert not partial_files(backup.videos), partial_files(backup.videos)
    assert PARTIAL not in str([p for p in backup.videos.rglob("*") if p.is_file()])
