"""The second copy on the simulated lab, with restic itself: a local repository and an SFTP one on a
simulated NAS (a network namespace with its own sshd); copies made by real passes sent, then a
database and a video restored from the repository and compared with the node's copies; an upload
stopped by SIGTERM and one whose link is cut, each going on cleanly at the next run; a wrong
password, a full repository disk and an unreachable repository, each one line, one alert and the
node's archive untouched; snapshots taken while a database is replaced in a loop hold one whole
version of it each (why the second copy may run beside a pass)."""
import json
import os
import signal
import socket
import sqlite3
import subprocess
import threading
import time

import pytest

from tests.integration.offsite_node import Nas, OffsiteNode, archive_state, digest, locks, sending_then
from tests.integration.backup_node import ROOT, integrity
from ethoscope_rsync.render.upstream import render_metrics
from ethoscope_rsync.state.offsite import attach
from ethoscope_rsync.state.store import read_json
from tests.lab.data import _random_file
from tests.listeners import Webhook
from tests.polling import wait_for


def reachable(address, port):
    try:
        socket.create_connection((address, port), timeout=2).close()
    except OSError:
        return False
    return True


def error_lines(stderr):
    assert "Traceback" not in stderr, stderr
    return [line for line in stderr.splitlines() if line.startswith("E ")]


def newest(root, pattern):
    return sorted(root.rglob(pattern))[-1]


def restored(node, tmp_path, paths, snapshot="latest", sftp=None):
    """`paths` restored from `snapshot` into a fresh folder -> {path: restored copy}."""
    target = tmp_path / ("restore-%s-%d" % (snapshot, len(list(tmp_path.glob("restore-*")))))
    args = ["restore", snapshot, "--tag", "ethoscope-backup", "--target", str(target)]
    result = node.restic(*args, *("--include=" + str(p) for p in paths), sftp=sftp)
    assert result.returncode == 0, result.stderr
    return {p: target / str(p).lstrip("/") for p in paths}


def test_a_local_second_copy_of_real_passes_restores_a_database_and_a_video(make_lab, tmp_path):
    lab = make_lab(n_devices=2, populate=True)
    node = OffsiteNode(lab, tmp_path / "node", str(tmp_path / "repo"))
    assert node.run().returncode == 0
    one = lab.devices[0]
    partial = node.videos / one.id / ".ethoscope-backup-partial" / "chunk.h264"
    partial.parent.mkdir(parents=True)
    partial.write_bytes(b"an interrupted transfer")
    temporary = node.videos / one.id / ".x_00001.h264.Ab12Cd"
    temporary.write_bytes(b"rsync's temporary file")
    raw = list((node.results / ".ethoscope-backup" / "raw").rglob("*.db"))
    assert raw                                        # the raw mirror exists, and is never sent

    init = node.offsite("--init")
    assert init.returncode == 0 and "created the repository" in init.stdout, init.stderr
    preview = node.offsite("--dry-run")
    assert preview.returncode == 0 and "would send: %s, %s" % (node.results, node.videos) in preview.stdout
    sent = node.offsite()
    assert sent.returncode == 0, sent.stderr
    state = json.loads((node.state / "offsite.json").read_text())
    assert state["outcome"] == "ok" and state["held_back"] == 0 and state["last"]["files"] > 0

    listed = node.restic("ls", "latest", "--tag", "ethoscope-backup").stdout.splitlines()
    assert not [p for p in listed if "/." in p], "hidden files or folders were sent"
    database, video = newest(node.results / one.id, "*.db"), newest(node.videos / one.id, "*.h264")
    assert str(database) in listed and str(video) in listed
    copies = restored(node, tmp_path, [database, video])
    assert digest(copies[video]) == digest(video) and digest(copies[database]) == digest(database)
    assert integrity(copies[database]) == "ok"

    again = node.offsite()                            # nothing changed: a snapshot that adds next to nothing
    assert again.returncode == 0, again.stderr
    second = json.loads((node.state / "offsite.json").read_text())["last"]
    assert second["id"] != state["last"]["id"] and second["added"] < state["last"]["added"] / 20

    status = node.command("status")
    assert "second copy %s: newest snapshot %s" % (tmp_path / "repo", second["id"]) in status.stdout
    metrics = render_metrics(read_json(node.status_file), attach(read_json(node.state / "history.json"),
                                                                 read_json(node.state / "offsite.json")),
                             time.time(), 86400.0, 14.0)
    assert 'ethoscope_backup_offsite_last_result{result="ok"} 1' in metrics
    lint = subprocess.run(["promtool", "check", "metrics"], input=metrics.encode(), capture_output=True, timeout=60)
    assert lint.returncode == 0, lint.stdout + lint.stderr
    check = node.command("check")
    assert "second copy %s: reachable, the password opens it" % (tmp_path / "repo") in check.stdout
    assert "repository free space: " in check.stdout
    verify = node.command("verify")
    assert verify.returncode == 0, verify.stdout + verify.stderr
    assert json.loads((node.state / "offsite.json").read_text())["check"]["share"] == "1/12"
    node.command("verify")
    assert json.loads((node.state / "offsite.json").read_text())["check"]["share"] == "2/12"


def test_a_second_copy_on_a_nas_over_sftp_and_a_link_cut_during_the_upload(make_lab, tmp_path):
    lab = make_lab(n_devices=1, populate=True)
    nas = Nas(make_lab(n_devices=1, populate=False), lab)
    node = OffsiteNode(lab, tmp_path / "node", nas.repository, offsite="timeout = 120\n")
    node.conf.write_text(node.conf.read_text().replace("[ssh]\n", "[ssh]\nconnect_timeout = 3\n"))
    assert node.run().returncode == 0
    assert node.offsite("--init").returncode == 0
    first = node.offsite()
    assert first.returncode == 0, first.stderr
    check = node.command("check")
    assert "reachable, the password opens it" in check.stdout and "repository free space: " in check.stdout
    assert "not told" not in check.stdout, check.stdout          # the NAS says how much space it has

    device = lab.devices[0]
    big = device.data_root / "videos" / device.id / device.name / "2024-03-01_12-00-00"
    big.mkdir(parents=True)
    _random_file(big / ("2024-03-01_12-00-00_%s_1280x960@25_00000.h264" % device.id), 24 << 20)
    lab._chown_tree(device.data_root, big)
    assert node.run().returncode == 0
    nas.lab.rate_limit(nas.device, "8mbit")
    process = node.start_offsite()
    out, err = sending_then(process, node, lambda: nas.lab.cut_link(nas.device))
    assert process.returncode == 1
    (line,) = error_lines(err)
    assert "second copy failed: repository unreachable: " in line
    nas.lab.restore_link(nas.device)
    nas.lab.clear_rate_limit(nas.device)
    wait_for(lambda: reachable(nas.device.ip, 22), 30, what="the NAS's link to be up again")

    again = node.offsite()
    assert again.returncode == 0, again.stderr
    sftp = nas.sftp_command(node)
    assert node.restic("check", sftp=sftp).returncode == 0
    chunk = newest(node.videos / device.id, "*_00000.h264")
    copies = restored(node, tmp_path, [chunk], sftp=sftp)
    assert digest(copies[chunk]) == digest(chunk)


def test_an_upload_stopped_by_sigterm_goes_on_cleanly_at_the_next_run(make_lab, tmp_path):
    lab = make_lab(n_devices=1, populate=False)
    device = lab.devices[0]
    lab.populate(device, experiments=1, db_rows=200, video_chunks=1, chunk_bytes=12 << 20, mp4=False)
    node = OffsiteNode(lab, tmp_path / "node", str(tmp_path / "repo"), offsite="bwlimit = 1024\n")
    assert node.run().returncode == 0 and node.offsite("--init").returncode == 0
    process = node.start_offsite()
    out, err = sending_then(process, node, lambda: os.kill(process.pid, signal.SIGTERM), tmp_path / "repo")
    assert process.returncode == -15, err            # the run dies by the signal, as systemd expects
    assert "received SIGTERM: stopping the second copy" in err and "Traceback" not in err
    state = json.loads((node.state / "offsite.json").read_text())
    assert state["outcome"] == "interrupted" and state["last"] is None
    assert locks(tmp_path / "repo") == []            # restic removed its lock (SIGINT)

    node.conf.write_text(node.conf.read_text().replace("bwlimit = 1024\n", ""))
    again = node.offsite()
    assert again.returncode == 0, again.stderr
    assert node.restic("check", "--read-data").returncode == 0
    chunk = newest(node.videos / device.id, "*.h264")
    assert digest(restored(node, tmp_path, [chunk])[chunk]) == digest(chunk)


@pytest.fixture
def hook():
    with Webhook() as hook:
        yield hook


def failing_run_alerts_once(node, hook, problem):
    """The run fails with one line naming `problem`, and the alert run sends one message about it."""
    before = archive_state(node)
    result = node.offsite()
    assert result.returncode == 1
    (line,) = error_lines(result.stderr)
    assert f"second copy failed: {problem}: " in line, line
    assert archive_state(node) == before             # the node's archive is only ever read
    assert node.command("alert").returncode == 0
    (doc,) = hook.documents()
    (change,) = [c for c in doc["changes"] if c["subject"] == "offsite"]
    assert change["problem"] == "second copy failing" and change["detail"].startswith(problem)
    assert "journalctl -u ethoscope-backup-offsite.service" in doc["text"]
    assert node.offsite().returncode == 1 and node.command("alert").returncode == 0
    assert len(hook.documents()) == 1                # still failing: nothing new to say


def test_a_wrong_password(make_lab, tmp_path, hook):
    lab = make_lab(n_devices=1, populate=True)
    node = OffsiteNode(lab, tmp_path / "node", str(tmp_path / "repo"), extra=f"[alert]\nwebhook = {hook.url}\n")
    assert node.run().returncode == 0 and node.offsite("--init").returncode == 0
    node.password.write_text("not the password\n")
    failing_run_alerts_once(node, hook, "wrong password")


def test_a_full_repository_disk(make_lab, tmp_path, hook):
    lab = make_lab(n_devices=1, populate=False)
    lab.populate(lab.devices[0], experiments=1, db_rows=200, video_chunks=2, chunk_bytes=4 << 20, mp4=False)
    disk = tmp_path / "small-disk"
    disk.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(disk)], check=True)
    try:
        node = OffsiteNode(lab, tmp_path / "node", str(disk / "repo"), extra=f"[alert]\nwebhook = {hook.url}\n")
        assert node.run().returncode == 0 and node.offsite("--init").returncode == 0
        failing_run_alerts_once(node, hook, "repository full")
    finally:
        subprocess.run(["umount", str(disk)], check=False)


def test_an_unreachable_repository(make_lab, tmp_path, hook):
    lab = make_lab(n_devices=1, populate=True)
    nowhere = f"sftp:{'ethoscope'}@{lab.subnet}.249:/srv/repo"          # in the lab's subnet, nobody there
    node = OffsiteNode(lab, tmp_path / "node", nowhere, extra=f"[alert]\nwebhook = {hook.url}\n")
    node.conf.write_text(node.conf.read_text().replace("[ssh]\n", "[ssh]\nconnect_timeout = 2\n"))
    assert node.run().returncode == 0
    failing_run_alerts_once(node, hook, "repository unreachable")
    check = node.command("check")
    assert check.returncode == 1 and "FAIL  second copy %s: repository unreachable" % nowhere in check.stdout


def _version(path, number):
    """A complete database whose every row says which version it is (`number` rows)."""
    temporary = path.with_name(".%s.recover-%d" % (path.name, number))
    with sqlite3.connect(temporary) as db:
        db.execute("CREATE TABLE t(version INTEGER, pad BLOB)")
        db.executemany("INSERT INTO t VALUES (?, randomblob(3000))", [(number,)] * (100 + number))
    db.close()
    os.replace(temporary, path)                       # as a recovery puts a database in place


def test_snapshots_beside_atomic_replacements_hold_one_whole_version(make_lab, tmp_path):
    lab = make_lab(n_devices=1, populate=False)
    node = OffsiteNode(lab, tmp_path / "node", str(tmp_path / "repo"), offsite="databases = all\n")
    database = node.results / ("a" * 32) / "ETHOSCOPE_001" / "2026-01-01_00-00-00" / "x.db"
    database.parent.mkdir(parents=True)
    node.videos.mkdir(parents=True, exist_ok=True)
    _version(database, 0)
    assert node.offsite("--init").returncode == 0
    done, versions = threading.Event(), []

    def replace_in_a_loop():
        number = 1
        while not done.is_set():
            _version(database, number)
            versions.append(number)
            number += 1
    writer = threading.Thread(target=replace_in_a_loop)
    writer.start()
    copies = []
    try:
        for _ in range(4):        # restored at once: the next run's retention keeps one snapshot a day
            result = node.offsite()
            assert result.returncode == 0, result.stderr
            snapshot = json.loads((node.state / "offsite.json").read_text())["last"]["id"]
            copies.append(restored(node, tmp_path, [database], snapshot=snapshot)[database])
    finally:
        done.set()
        writer.join()
    assert len(versions) > 4                          # the database was replaced while the snapshots were taken
    for copy in copies:
        assert integrity(copy) == "ok"
        with sqlite3.connect(f"file:{copy}?immutable=1", uri=True) as db:
            (kinds, rows, number), = db.execute("SELECT count(DISTINCT version), count(*), max(version) FROM t")
        assert kinds == 1 and rows == 100 + number    # one whole version, never a mix


def test_destinations_below_a_hidden_folder_are_sent_without_their_own_hidden_files(tmp_path):
    """The patterns that leave hidden files out are anchored below each destination: a destination
    under a hidden folder (a bare ".*" matches it too) is sent whole."""
    base = tmp_path / ".lab [data]"
    for kind in ("results", "videos"):
        (base / kind / ("a" * 32)).mkdir(parents=True)
        (base / kind / ("a" * 32) / f"{kind}.txt").write_text(kind)
        (base / kind / ("a" * 32) / f".{kind}.txt.Ab12Cd").write_text("rsync's temporary file")
    (base / "pw").write_text("password\n")
    conf = base / "backup.conf"
    conf.write_text(f"[node]\nserver = \"\"\n[paths]\nresults = {base}/results\nvideos = {base}/videos\n"
                    f"state_dir = {tmp_path}/state\nstatus_file = {tmp_path}/status.json\nupstream_config = /none\n"
                    f"[offsite]\nrepository = {tmp_path}/repo\npassword_file = {base}/pw\n")

    def offsite(*args):
        return subprocess.run(["/usr/bin/python3", "-m", "ethoscope_rsync", "offsite", "-c", str(conf), *args],
                              cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert offsite("--init").returncode == 0
    sent = offsite()
    assert sent.returncode == 0, sent.stderr
    env = dict(os.environ, RESTIC_REPOSITORY=str(tmp_path / "repo"), RESTIC_PASSWORD_FILE=str(base / "pw"))
    listed = subprocess.run(["restic", "--no-cache", "ls", "latest"], env=env, capture_output=True, text=True).stdout
    files = [line for line in listed.splitlines() if line.endswith(".txt") or ".Ab12Cd" in line]
    assert sorted(files) == sorted(str(base / kind / ("a" * 32) / f"{kind}.txt") for kind in ("results", "videos"))
