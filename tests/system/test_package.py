"""System test: build the .deb, lint it, install it into a booted Debian 12 container, drive the units.

Run as root: /usr/bin/python3 -m pytest -p no:cacheprovider tests/system
The container (systemd-nspawn --boot on a cached mmdebstrap rootfs, volatile overlay) shares the
host's network, so the status socket is reachable from the host and the backup pass reaches the
simulated lab (tests.lab, 169.254.0.0/16). The status socket listens on a free port chosen here
(drop-in), not 8093, so the test does not collide with a demo or another test on this machine.
"""
import contextlib
import filecmp
import json
import os
import re
import shutil
import sqlite3
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest

from ethoscope_rsync.state.store import load_status
from tests.system.container import (BASE_PACKAGES, GUEST_DEB_DIR, Container, dependency_names, free_port, install,
                                    listen_on, rootfs_for, wait_for)

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (systemd-nspawn, network namespaces)")

UNITS = ["ethoscope-backup.service", "ethoscope-backup.timer",
         "ethoscope-backup-status.socket", "ethoscope-backup-status.service"]
RUNNER, STATUS, TIMER, SOCKET = ("ethoscope-backup.service", "ethoscope-backup-status.service",
                                 "ethoscope-backup.timer", "ethoscope-backup-status.socket")
SWITCH = "ethoscope_backup_unified.service"
MAX_EXPOSURE = {RUNNER: 3.0, STATUS: 2.0}
SERVICE_USER = "ethoscope-backup"
UPSTREAM_MID = "0123456789abcdef0123456789abcdef"   # a folder "left by the upstream root-run tool"


def http_get(port, path="/", timeout=15):
    req = urllib.request.Request("http://127.0.0.1:%d%s" % (port, path), headers={"Accept": "application/json"})
    with urllib.request.urlopen(req, timeout=timeout) as r:
        return r.status, r.headers.get("Content-Type", ""), r.read()


# ------------------------------------------------------------------------------------------ fixtures
@pytest.fixture(scope="module")
def rootfs(deb, suite):
    t0 = time.monotonic()
    path = rootfs_for(BASE_PACKAGES + dependency_names(deb), suite)
    print("rootfs %s ready in %.1fs" % (path, time.monotonic() - t0))
    return path


@pytest.fixture(scope="module")
def port():
    return free_port()


@pytest.fixture(scope="module")
def box(rootfs, deb, port, suite):
    """Booted container with the package installed (the upstream-node situation: /ethoscope_data/...
    exists owned by root with an older root-owned backup in it, the key is at /etc/ethoscope/keys/id_rsa)."""
    name = "ethsys%s%d" % (suite[0], os.getpid())
    with Container(rootfs, name, binds_ro=[(str(deb.parent), GUEST_DEB_DIR)]) as c:
        # Upstream node layout before the package comes: root-owned destinations and an old backup.
        c.sh("mkdir -p /ethoscope_data/results/%s/ETHOSCOPE_099/2020-01-01_00-00-00 /ethoscope_data/videos"
             " && echo old > /ethoscope_data/results/%s/ETHOSCOPE_099/2020-01-01_00-00-00/old.db"
             " && chown -R root:root /ethoscope_data" % (UPSTREAM_MID, UPSTREAM_MID))
        # The status socket on a free port (set before install, so the socket starts there).
        listen_on(c, port)
        t0 = time.monotonic()
        install(c, deb)
        print("apt install in the container: %.1fs" % (time.monotonic() - t0))
        yield c
        print(c.sh("journalctl -b --no-pager -n 60 -u 'ethoscope-*'", check=False).stdout)


# ------------------------------------------------------------------------------------------ package
def test_units_installed_enabled_and_active(box):
    for unit in UNITS:
        assert box.path("/usr/lib/systemd/system/" + unit).is_file(), unit
    assert box.systemctl("is-enabled", SOCKET, check=False).stdout.strip() == "enabled"
    for unit in (TIMER, SOCKET):
        assert box.systemctl("is-active", unit, check=False).stdout.strip() == "active", unit
    # The services are never enabled by themselves: only the timer and the socket start them; the
    # timer runs while a switch is on (no upstream units here: the generator's unified, on at boot).
    for unit in (RUNNER, STATUS, TIMER):
        assert box.systemctl("is-enabled", unit, check=False).stdout.strip() == "static", unit
    assert box.systemctl("is-active", SWITCH, check=False).stdout.strip() == "active"
    assert box.systemctl("is-enabled", SWITCH, check=False).stdout.strip() == "generated"
    assert box.path("/etc/ethoscope/backup.conf").is_file()
    assert "/etc/ethoscope/backup.conf" in box.path("/var/lib/dpkg/info/ethoscope-rsync.conffiles").read_text()
    for man in ("/usr/share/man/man8/ethoscope-backup.8.gz", "/usr/share/man/man5/ethoscope-backup.conf.5.gz"):
        assert box.path(man).is_file(), man


def test_units_verify_clean(box):
    # --man=no: the minimal container has no man-db; the pages themselves are checked above.
    p = box.exec(["systemd-analyze", "verify", "--man=no"] + ["/usr/lib/systemd/system/" + u for u in UNITS],
                 check=False)
    out = (p.stdout + p.stderr).strip()
    assert p.returncode == 0 and not out, out


def test_user_and_directories(box):
    uid = int(box.exec(["id", "-u", SERVICE_USER]).stdout)
    assert 0 < uid < 1000
    for d in ("/ethoscope_data/results", "/ethoscope_data/videos", "/var/lib/ethoscope-backup",
              "/run/ethoscope-backup"):
        st = box.path(d).stat()
        assert st.st_uid == uid, (d, st.st_uid)
    # The upstream root-owned backup: its directories were handed over, its files kept their owner.
    old = box.path("/ethoscope_data/results/%s/ETHOSCOPE_099/2020-01-01_00-00-00" % UPSTREAM_MID)
    assert old.stat().st_uid == uid
    assert (old / "old.db").stat().st_uid == 0
    # A node without /ethoscope_data: what tmpfiles does at boot creates the destinations.
    box.sh("mv /ethoscope_data /ethoscope_data.moved && systemd-tmpfiles --create ethoscope-rsync.conf"
           " && test -d /ethoscope_data/results -a -d /ethoscope_data/videos"
           " && test $(stat -c %U /ethoscope_data/results) = " + SERVICE_USER +
           " && rm -rf /ethoscope_data && mv /ethoscope_data.moved /ethoscope_data")


def test_security_exposure(box):
    for unit, limit in MAX_EXPOSURE.items():
        out = box.exec(["systemd-analyze", "security", "--no-pager", unit], check=False).stdout
        m = re.search(r"Overall exposure level for %s: (\d+\.\d+)" % re.escape(unit), out)
        assert m, out
        print("%s exposure %s (limit %.1f)" % (unit, m.group(1), limit))
        assert float(m.group(1)) <= limit, out


def test_status_service_socket_activated_from_host(box, port):
    assert box.systemctl("is-active", STATUS, check=False).stdout.strip() == "inactive"
    assert box.show(STATUS, "ActiveEnterTimestampMonotonic") == "0", "started before any request"
    status, ctype, body = wait_for(lambda: _try_get(port, "/"), 30, interval=0.5, what="GET / on the status socket")
    assert status == 200 and "json" in ctype, (status, ctype, body[:200])
    doc = json.loads(body)
    assert set(doc) >= {"status", "last_backup"}, doc
    assert box.show(STATUS, "ActiveEnterTimestampMonotonic") != "0"
    assert box.show(STATUS, "Result") == "success"


def _try_get(port, path):
    try:
        return http_get(port, path)
    except OSError:
        return None


# ------------------------------------------------------------------------------------------ with a lab
@pytest.fixture(scope="module")
def lab():
    from tests.lab import Lab
    with Lab("systest", 3) as lab:
        for device in lab.devices:
            lab.populate(device)
        yield lab


@pytest.fixture(scope="module")
def configured(box, lab):
    """The lab's key and config in the container; the timer stopped so that passes are the test's."""
    box.systemctl("stop", TIMER)
    wait_for(lambda: box.systemctl("is-active", RUNNER, check=False).stdout.strip() != "activating", 120,
             what="a timer-started pass to end")
    box.systemctl("reset-failed", RUNNER, check=False)
    box.write("/etc/ethoscope/keys/id_rsa", Path(lab.key_path).read_bytes(), mode=0o600)
    text = lab.config_text("/ethoscope_data/results", "/ethoscope_data/videos", "/run/ethoscope-backup/status.json",
                           "/var/lib/ethoscope-backup", "/var/lib/ethoscope-backup/known_hosts")
    text = re.sub(r"(?m)^key\s*=.*$", "key = /etc/ethoscope/keys/id_rsa", text)
    # each start of the unit copies every device (run --scheduled: due a second after its last copy)
    box.write("/etc/ethoscope/backup.conf", text + "[transfer]\ninterval = 1\n", mode=0o644)
    return box


def _assert_backed_up(box, lab):
    """Every file of every device is on the node; databases may differ byte-wise but hold the same rows."""
    uid = int(box.exec(["id", "-u", SERVICE_USER]).stdout)
    checked = 0
    for device in lab.devices:
        for kind in ("results", "videos"):
            src_root = Path(device.data_root) / kind
            for src in src_root.rglob("*"):
                if not src.is_file() or src.name.endswith(("-wal", "-shm", "-journal")):
                    continue
                dst = box.path("/ethoscope_data/%s/%s" % (kind, src.relative_to(src_root)))
                if not dst.is_file():
                    listing = box.sh("ls -laR /ethoscope_data/%s/%s" % (kind, device.id), check=False).stdout
                    raise AssertionError("missing on the node: %s\n%s" % (dst, listing))
                assert dst.stat().st_uid == uid, dst
                if not filecmp.cmp(str(src), str(dst), shallow=False):
                    assert src.suffix == ".db", "differs: %s" % dst
                    assert _rows(src) == _rows(dst), "database rows differ: %s" % dst
                checked += 1
    assert checked > 0, "the lab devices hold no files"
    return checked


def _rows(path):
    """All rows of a database, as SQL. Read from a private copy: SQLite resolves symbolic links in the
    path, and /proc/PID/root (the container's files) is one that would lead it to the host's /."""
    with tempfile.TemporaryDirectory() as tmp:
        copy = os.path.join(tmp, "copy.db")
        shutil.copyfile(str(path), copy)
        con = sqlite3.connect("file:%s?immutable=1" % copy, uri=True)
        try:
            return list(con.iterdump())
        finally:
            con.close()


def test_backup_pass_copies_every_device(configured, lab, port):
    box = configured
    t0 = time.monotonic()
    p = box.systemctl("start", RUNNER, timeout=300, check=False)
    print("pass: %.1fs" % (time.monotonic() - t0))
    assert p.returncode == 0 and box.show(RUNNER, "Result") == "success", \
        box.sh("journalctl -b --no-pager -n 80 -u %s" % RUNNER, check=False).stdout
    print("%d files verified" % _assert_backed_up(box, lab))
    assert box.path("/run/ethoscope-backup/status.json").is_file()
    # Status of every device, read through the (socket-activated) web service from the host.
    status, _, body = wait_for(lambda: _try_get(port, "/status"), 30, interval=0.5, what="GET /status")
    devices = json.loads(body)["devices"]
    for device in lab.devices:
        assert device.id in devices, sorted(devices)
        assert devices[device.id]["name"] == device.name
        assert devices[device.id]["progress"]["status"] == "completed", devices[device.id]["progress"]
    _, _, body = http_get(port, "/")
    assert json.loads(body)["last_backup"], body


def test_operator_commands_as_root(configured, lab):
    """README's operations, as root in the container: check, status, a selective pass by hand."""
    box = configured
    check = box.exec(["ethoscope-backup", "check"], timeout=120, check=False)
    assert check.returncode == 0, check.stdout + check.stderr
    for device in lab.devices:
        assert "ok    %s" % device.name in check.stdout, check.stdout
    first = lab.devices[0]
    chunk = lab.add_video_chunk(first, 200000)
    manual = box.exec(["ethoscope-backup", "run", "-e", first.name[-3:], "--videos-only"], timeout=180, check=False)
    assert manual.returncode == 0, manual.stderr
    copied = box.path("/ethoscope_data/videos/%s" % chunk.relative_to(Path(first.data_root) / "videos"))
    uid = int(box.exec(["id", "-u", SERVICE_USER]).stdout)
    assert copied.read_bytes() == chunk.read_bytes() and copied.stat().st_uid == uid
    assert box.path("/var/lib/ethoscope-backup/history.json").stat().st_uid == uid
    table = box.exec(["ethoscope-backup", "status"]).stdout
    assert all(device.name in table for device in lab.devices), table


def test_journal_fields_per_device(configured, lab):
    box = configured
    for device in lab.devices:
        out = box.exec(["journalctl", "--no-pager", "-o", "json", "-u", RUNNER, "DEVICE_NAME=" + device.name]).stdout
        entries = [json.loads(line) for line in out.splitlines() if line.strip()]
        assert entries, "no journal entry for %s" % device.name
        assert all(e.get("DEVICE_ID") == device.id for e in entries), device.name
        kinds = {e.get("TRANSFER_KIND") for e in entries if "TRANSFER_KIND" in e}
        assert kinds >= {"results", "videos"}, kinds
        for e in entries:
            if "TRANSFER_KIND" in e:
                assert {"TRANSFER_BYTES", "TRANSFER_FILES", "RSYNC_EXIT_CODE"} <= set(e), e


def test_timer_triggers_a_pass(configured, lab):
    box = configured
    for device in lab.devices:                       # new data for the timer's pass to bring over
        lab.populate(device, experiments=1, video_chunks=1, chunk_bytes=1 << 20)
    before = box.show(RUNNER, "ExecMainStartTimestampMonotonic")
    # Fire soon instead of 2 min after boot / 5 min after the last pass.
    box.write("/etc/systemd/system/%s.d/test-soon.conf" % TIMER,
              "[Timer]\nOnBootSec=\nOnUnitInactiveSec=\nRandomizedDelaySec=0\nOnActiveSec=1s\n")
    box.systemctl("daemon-reload")
    box.systemctl("start", SWITCH)                   # the node's switch: on
    try:
        wait_for(lambda: box.show(RUNNER, "ExecMainStartTimestampMonotonic") != before, 60,
                 what="the timer to start a pass")
        wait_for(lambda: box.systemctl("is-active", RUNNER, check=False).stdout.strip() in ("inactive", "failed"),
                 300, interval=0.5, what="the timer's pass to end")
        assert box.show(RUNNER, "Result") == "success", \
            box.sh("journalctl -b --no-pager -n 80 -u %s" % RUNNER, check=False).stdout
        _assert_backed_up(box, lab)
    finally:
        box.systemctl("stop", SWITCH, check=False)   # off: the timer stops with it
        box.sh("rm -f /etc/systemd/system/%s.d/test-soon.conf && systemctl daemon-reload" % TIMER, check=False)


def _our_processes(box):
    """Processes of the package in the container (its /proc, read from the host)."""
    found = []
    for entry in box.path("/proc").iterdir():
        try:
            argv = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if entry.name.isdigit() and (b"/usr/bin/ethoscope-backup" in argv or b"ethoscope_rsync" in argv):
            found.append(argv.replace(b"\0", b" ").decode(errors="replace"))
    return found


@contextlib.contextmanager
def _a_pass_held_by_a_cut_link(box, lab):
    """A pass started by systemd, waiting on a device whose link is cut, once it reached the devices;
    yields the status file. The link is restored afterwards."""
    lab.cut_link(lab.devices[0])
    try:
        box.systemctl("start", "--no-block", RUNNER)
        status = box.path("/run/ethoscope-backup/status.json")

        def reached():
            # This pass's status, not one a pass killed earlier left on disk (its devices "running" too).
            now = load_status(status)
            main_pid = box.show(RUNNER, "MainPID")
            return (main_pid != "0" and str(now.run.pid) == main_pid
                    and any(d.state == "running" for d in now.devices.values()))

        wait_for(reached, 60, interval=0.5, what="the pass to reach the devices")
        yield status
    finally:
        lab.restore_link(lab.devices[0])


def test_a_pass_killed_before_its_end_is_not_shown_running(configured, lab, port):
    """SIGKILL (as the out-of-memory killer sends it) in the middle of a pass: the sandboxed status
    service sees the pass's process is gone and shows it interrupted, not running for ever."""
    box = configured
    with _a_pass_held_by_a_cut_link(box, lab) as status:
        assert json.loads(wait_for(lambda: _try_get(port, "/"), 30, what="GET /")[2])["status"] == "running"
        box.systemctl("kill", "-s", "KILL", RUNNER)
        wait_for(lambda: box.systemctl("is-active", RUNNER, check=False).stdout.strip() in ("inactive", "failed"),
                 30, interval=0.5, what="the killed pass to end")
        assert load_status(status).run.outcome == "running"          # what it left on disk
        doc = json.loads(wait_for(lambda: _try_get(port, "/status"), 30, what="GET /status")[2])
        assert doc["run"]["outcome"] == "interrupted" and doc["processing_devices"] == [], doc["run"]
        assert json.loads(http_get(port, "/")[2])["status"] == "idle"
    box.systemctl("reset-failed", RUNNER, check=False)


# ------------------------------------------------------------------------------------------ last: remove, purge
def test_remove_stops_a_pass_that_is_running(configured, lab):
    """apt remove while a pass waits on a device whose link is cut: the pass is stopped (its final
    status written), not left running without its code and units."""
    box = configured
    with _a_pass_held_by_a_cut_link(box, lab) as status:
        assert box.systemctl("is-active", RUNNER, check=False).stdout.strip() == "activating"
        box.exec(["apt-get", "remove", "-y", "-q", "ethoscope-rsync"], timeout=180)
        assert box.systemctl("is-active", RUNNER, check=False).stdout.strip() != "activating"
        # (the alert its end may have started, stopped by the prerm or ending on its own, may take a moment)
        wait_for(lambda: _our_processes(box) == [], 30, interval=0.5, what="the package's processes to end")
        assert load_status(status).run.outcome not in ("", "running"), load_status(status).run


def test_purge_removes_state_keeps_data(box):
    box.sh("mkdir -p /ethoscope_data/results/keepme && echo data > /ethoscope_data/results/keepme/f")
    assert box.path("/var/lib/ethoscope-backup").is_dir()
    box.exec(["apt-get", "purge", "-y", "-q", "ethoscope-rsync"], timeout=120)
    assert not box.path("/var/lib/ethoscope-backup").exists()
    assert not box.path("/run/ethoscope-backup").exists()
    assert not box.path("/etc/ethoscope/backup.conf").exists()
    assert box.path("/ethoscope_data/results/keepme/f").read_text() == "data\n"
    assert box.path("/ethoscope_data/results/%s/ETHOSCOPE_099/2020-01-01_00-00-00/old.db" % UPSTREAM_MID).is_file()
    for unit in UNITS:
        assert not box.path("/usr/lib/systemd/system/" + unit).exists(), unit
    assert box.systemctl("is-active", SOCKET, check=False).stdout.strip() != "active"
