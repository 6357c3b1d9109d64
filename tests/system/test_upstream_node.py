"""System test: the package on an upstream ethoscope node (issues 13.3, 13.4, 11.7).

A booted Debian 12 container in a network namespace of its own, joined to a simulated lab's bridge
(169.254.X.5), so port 8093 inside it is really free for whoever takes it. Before the package comes,
stand-ins for the upstream node's backup daemons are installed the upstream way and running:
  ethoscope_backup_unified  unit file linked into /usr/lib/systemd/system from /opt, enabled (the
                            upstream installer); answers on 8093, touches a marker under /ethoscope_data
  ethoscope_backup_video    a unit file of its own in /etc/systemd/system, enabled; touches a marker
  ethoscope_backup_mysql    answers on 8090, enabled (must be left alone)
Then: install (the old daemons step aside, ours answers on 8093, the node's `systemctl is-active
ethoscope_backup_unified` says active), passes by the timer, root's commands after an SD card swap,
the switch off (inactive), and purge (the stand-ins come back). Every layout of the upstream units
and every switch: tests/system/test_upstream_layouts.py, test_node_controls.py.

Run as root: /usr/bin/python3 -m pytest -p no:cacheprovider tests/system
"""
import json
import os
import re
from pathlib import Path

import pytest

from tests.system.container import (BASE_PACKAGES, GUEST_DEB_DIR, Container, LabNetns, dependency_names, install,
                                    rootfs_for, wait_for)
from tests.system.test_package import RUNNER, SERVICE_USER, TIMER

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (systemd-nspawn, network namespaces)")

UPSTREAM = "ethoscope_backup_unified.service"
STAND_IN = r'''
import http.server, json, pathlib, sys
port, marker = int(sys.argv[1]), pathlib.Path(sys.argv[2])
marker.parent.mkdir(parents=True, exist_ok=True)
marker.write_text("stand-in ran\n")
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = json.dumps({"stand_in": sys.argv[3]}).encode()
        self.send_response(200); self.send_header("Content-Type", "application/json"); self.end_headers()
        self.wfile.write(body)
if port:
    http.server.HTTPServer(("", port), H).serve_forever()
else:
    import time
    while True:
        time.sleep(3600)
'''


def stand_in_unit(what, port, marker):
    return ("[Unit]\nDescription=stand-in for the upstream %s backup\n[Service]\nType=simple\n"
            "WorkingDirectory=/opt/ethoscope/src/node/scripts/\n"
            "ExecStart=/usr/bin/python3 /opt/ethoscope/stand_in.py %d %s %s\nRestartSec=1\nRestart=always\n"
            "[Install]\nWantedBy=multi-user.target\n" % (what, port, marker, what))


def curl(box, port, path="/"):
    """The JSON answer on 127.0.0.1:PORT inside the container, or None."""
    p = box.exec(["curl", "-s", "-m", "10", "-H", "Accept: application/json", "http://127.0.0.1:%d%s" % (port, path)],
                 check=False, timeout=30)
    try:
        return json.loads(p.stdout) if p.returncode == 0 else None
    except ValueError:
        return None


VERIFY_TIMER = "ethoscope-backup-verify.timer"


def is_active(box, unit):
    return box.systemctl("is-active", unit, check=False).stdout.strip()


def stand_in_pids(box, what):
    """Processes of the stand-in WHAT in the container (its /proc, read from the host: no procps there)."""
    pids = []
    for entry in box.path("/proc").iterdir():
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if entry.name.isdigit() and b"/opt/ethoscope/stand_in.py" in argv and argv[-2:] == [what.encode(), b""]:
            pids.append(int(entry.name))
    return pids


@pytest.fixture(scope="module")
def lab():
    from tests.lab import Lab
    with Lab("sysup%d" % os.getpid(), 2) as lab:
        for device in lab.devices:
            lab.populate(device)
        yield lab


@pytest.fixture(scope="module")
def node(deb, lab, suite):
    """The container as an upstream node with the stand-ins running, before the package."""
    rootfs = rootfs_for(BASE_PACKAGES + dependency_names(deb), suite)
    name = "ethup%s%d" % (suite[0], os.getpid())
    with LabNetns(lab, name) as netns, \
            Container(rootfs, name, binds_ro=[(str(deb.parent), GUEST_DEB_DIR)], netns=netns.name) as box:
        box.write("/opt/ethoscope/stand_in.py", STAND_IN)
        box.sh("mkdir -p /opt/ethoscope/src/node/scripts /opt/ethoscope/services /ethoscope_data/results"
               " /ethoscope_data/videos")
        box.write("/opt/ethoscope/services/" + UPSTREAM,
                  stand_in_unit("unified", 8093, "/ethoscope_data/results/.stand-in-unified"))
        box.write("/etc/systemd/system/ethoscope_backup_video.service",
                  stand_in_unit("video", 0, "/ethoscope_data/videos/.stand-in-video"))
        box.write("/opt/ethoscope/services/ethoscope_backup_mysql.service",
                  stand_in_unit("mysql", 8090, "/ethoscope_data/results/.stand-in-mysql"))
        box.sh("ln -s /opt/ethoscope/services/%s /opt/ethoscope/services/ethoscope_backup_mysql.service"
               " /usr/lib/systemd/system/ && systemctl daemon-reload" % UPSTREAM)
        box.systemctl("enable", "--now", "ethoscope_backup_unified", "ethoscope_backup_video", "ethoscope_backup_mysql")
        box.write("/etc/ethoscope/keys/id_rsa", Path(lab.key_path).read_bytes(), mode=0o600)
        yield box
        print(box.sh("journalctl -b --no-pager -n 80 -u 'ethoscope*'", check=False).stdout)


@pytest.fixture(scope="module")
def installed(node, deb, lab):
    box = node
    wait_for(lambda: (curl(box, 8093) or {}).get("stand_in") == "unified", 30, interval=0.3,
             what="the upstream stand-in on 8093")
    assert stand_in_pids(box, "video") and box.path("/ethoscope_data/videos/.stand-in-video").is_file()
    # The test's schedule: no pass of the timer's own during the test (timer_pass() brings one on).
    box.write("/etc/systemd/system/%s.d/test-schedule.conf" % TIMER, SCHEDULE % "1h")
    p = install(box, deb, timeout=240)
    print(p.stdout)
    text = lab.config_text("/ethoscope_data/results", "/ethoscope_data/videos", "/run/ethoscope-backup/status.json",
                           "/var/lib/ethoscope-backup", "/var/lib/ethoscope-backup/known_hosts")
    box.write("/etc/ethoscope/backup.conf", re.sub(r"(?m)^key\s*=.*$", "key = /etc/ethoscope/keys/id_rsa", text)
              + "[transfer]\ninterval = 1\n")     # each start of the unit copies every device (run --scheduled)
    return box, p.stdout


SCHEDULE = "[Timer]\nOnBootSec=\nOnUnitInactiveSec=\nRandomizedDelaySec=0\nOnActiveSec=%s\n"


def timer_pass(box):
    """Let the timer start one pass (1 s after its restart, instead of minutes from now); return
    the pass's Result (success, exit-code)."""
    before = box.show(RUNNER, "ExecMainStartTimestampMonotonic")
    box.write("/etc/systemd/system/%s.d/test-schedule.conf" % TIMER, SCHEDULE % "1s")
    box.systemctl("daemon-reload")
    box.systemctl("restart", TIMER)
    try:
        wait_for(lambda: box.show(RUNNER, "ExecMainStartTimestampMonotonic") != before, 60,
                 what="the timer to start a pass")
        wait_for(lambda: is_active(box, RUNNER) in ("inactive", "failed"), 300, interval=0.5,
                 what="the timer's pass to end")
        return box.show(RUNNER, "Result")
    finally:
        box.write("/etc/systemd/system/%s.d/test-schedule.conf" % TIMER, SCHEDULE % "1h")
        box.systemctl("daemon-reload")


def owner(box, path):
    return box.exec(["stat", "-c", "%U", path]).stdout.strip()


# ------------------------------------------------------------------------------------------ 13.4
def test_install_steps_the_upstream_daemons_aside(installed):
    box, output = installed
    lines = [line for line in output.splitlines() if line.startswith("ethoscope-rsync:")]
    assert len(lines) == 2, output
    assert "ethoscope_backup_unified ethoscope_backup_video" in lines[0] and "port 8093" in lines[0], lines
    assert lines[1].startswith("ethoscope-rsync: backups switched on: ethoscope_backup_unified ethoscope_backup_video")
    assert not stand_in_pids(box, "unified") and not stand_in_pids(box, "video")
    for unit in (UPSTREAM, "ethoscope_backup_video.service"):     # left as they were: enabled, now switches
        assert box.systemctl("is-enabled", unit, check=False).stdout.strip() == "enabled", unit
    recorded = box.path("/var/lib/ethoscope-backup/package/upstream-units-running").read_text().split()
    assert sorted(recorded) == ["ethoscope_backup_unified", "ethoscope_backup_video"]
    # MariaDB dumps (8090) are not ours to replace: left running.
    assert is_active(box, "ethoscope_backup_mysql") == "active" and stand_in_pids(box, "mysql")


def test_only_ours_answers_on_8093(installed):
    box, _ = installed
    doc = wait_for(lambda: curl(box, 8093), 30, interval=0.3, what="our status socket on 8093")
    assert set(doc) >= {"status", "last_backup"} and "stand_in" not in doc, doc
    assert is_active(box, "ethoscope-backup-status.socket") == "active"
    assert not stand_in_pids(box, "unified")


def test_upstream_units_cannot_copy_whoever_starts_them(installed):
    """Started by name (the node's web interface, an operator), the upstream units run nothing."""
    box, _ = installed
    box.systemctl("start", "ethoscope_backup_video.service")
    assert is_active(box, "ethoscope_backup_video") == "active"
    assert not stand_in_pids(box, "video")
    assert "zz-ethoscope-rsync.conf" in box.show("ethoscope_backup_video.service", "DropInPaths")
    box.systemctl("stop", "ethoscope_backup_video.service")


# ------------------------------------------------------------------------------------------ 13.3
def test_the_node_sees_the_rsync_backup_as_active(installed):
    box, _ = installed
    assert is_active(box, "ethoscope_backup_unified") == "active"
    assert "zz-ethoscope-rsync.conf" in box.show(UPSTREAM, "DropInPaths")
    # The node's updater restarts the active backup units: no pass, no second copier, 8093 stays ours.
    before = box.show(RUNNER, "ExecMainStartTimestampMonotonic")
    box.systemctl("restart", "ethoscope_backup_unified")
    assert is_active(box, "ethoscope_backup_unified") == "active"
    assert box.show(RUNNER, "ExecMainStartTimestampMonotonic") == before
    assert not stand_in_pids(box, "unified") and "stand_in" not in (curl(box, 8093) or {"stand_in": 1})


def test_reinstall_is_quiet_and_keeps_the_mirror(installed, deb):
    box, _ = installed
    box.systemctl("enable", "--now", VERIFY_TIMER)       # the operator's choice survives an upgrade
    p = box.exec(["dpkg", "-i", "%s/%s" % (GUEST_DEB_DIR, deb.name)], timeout=180)
    assert "ethoscope-rsync:" not in p.stdout, p.stdout
    wait_for(lambda: is_active(box, "ethoscope_backup_unified") == "active", 30, what="the switch after upgrade")
    assert is_active(box, TIMER) == "active"
    assert is_active(box, VERIFY_TIMER) == "active"
    box.systemctl("disable", "--now", VERIFY_TIMER)


# ------------------------------------------------------------------------------------------ 11.7
def test_timer_passes_and_root_commands_after_an_sd_card_swap(installed, lab):
    box, _ = installed
    files = ("/var/lib/ethoscope-backup", "/var/lib/ethoscope-backup/known_hosts",
             "/var/lib/ethoscope-backup/history.json")
    assert timer_pass(box) == "success", box.sh("journalctl -b --no-pager -n 60 -u " + RUNNER).stdout
    known = box.path("/var/lib/ethoscope-backup/known_hosts")
    first_keys = known.read_text()
    preview = box.exec(["ethoscope-backup", "run", "--dry-run"], timeout=120, check=False)   # as root
    assert preview.returncode == 0, preview.stdout + preview.stderr
    assert all(owner(box, f) == SERVICE_USER for f in files), [(f, owner(box, f)) for f in files]
    swapped = lab.devices[0]
    lab.regenerate_host_key(swapped)            # SD card swapped: same name and address, a new key
    check = box.exec(["ethoscope-backup", "check"], timeout=120, check=False)
    assert check.returncode == 1 and "host key changed" in check.stdout, check.stdout + check.stderr
    forget = box.exec(["ethoscope-backup", "forget-host", swapped.name], timeout=60)
    assert "forgot" in forget.stdout, forget.stdout
    assert all(owner(box, f) == SERVICE_USER for f in files), [(f, owner(box, f)) for f in files]
    # (package/ is the maintainer scripts' root-only folder: README.Debian, "State")
    assert box.sh("find /var/lib/ethoscope-backup -path /var/lib/ethoscope-backup/package -prune"
                  " -o ! -user %s -print -o -name '*.tmp*' -print" % SERVICE_USER).stdout == ""
    # The timer's pass records the device's new key and backs it up again.
    assert timer_pass(box) == "success", box.sh("journalctl -b --no-pager -n 60 -u " + RUNNER).stdout
    new_key = swapped.host_key_pub.read_text().split()[1]
    assert new_key in known.read_text() and new_key not in first_keys
    check = box.exec(["ethoscope-backup", "check"], timeout=120, check=False)
    assert check.returncode == 0, check.stdout + check.stderr
    assert all(owner(box, f) == SERVICE_USER for f in files), [(f, owner(box, f)) for f in files]
    # A later change of key is refused: that device fails, the pass says so, the key stays pinned.
    lab.regenerate_host_key(swapped)
    assert timer_pass(box) == "exit-code"
    status = wait_for(lambda: curl(box, 8093, "/status"), 30, interval=0.3, what="GET /status")
    device = status["devices"][swapped.id]
    assert device["progress"]["status"] == "error" and "host key" in json.dumps(device).lower(), device
    assert new_key in known.read_text()
    other = lab.devices[1]
    assert status["devices"][other.id]["progress"]["status"] == "completed"


# ------------------------------------------------------------------------------------------ 13.3 off, 13.4 purge
def test_switching_off_makes_the_node_see_it_inactive(installed):
    box, _ = installed
    box.systemctl("stop", "ethoscope_backup_unified", "ethoscope_backup_video")
    wait_for(lambda: is_active(box, TIMER) == "inactive", 30, what="the timer to stop with the switches")
    assert is_active(box, "ethoscope_backup_unified") == "inactive"
    box.systemctl("start", "ethoscope_backup_unified")
    assert is_active(box, TIMER) == "active" and is_active(box, "ethoscope_backup_unified") == "active"
    box.systemctl("stop", TIMER)                   # the timer stopped by hand: every switch is off
    assert is_active(box, "ethoscope_backup_unified") == "inactive"


def test_purge_gives_the_node_its_upstream_daemons_back(installed):
    box, _ = installed
    box.sh("rm -f /ethoscope_data/results/.stand-in-unified")
    p = box.exec(["apt-get", "purge", "-y", "-q", "ethoscope-rsync"], timeout=180)
    assert "started the upstream backup daemon(s) ethoscope_backup_unified ethoscope_backup_video again" \
        in p.stdout, p.stdout
    assert not box.path("/var/lib/ethoscope-rsync").exists()
    assert not box.path("/usr/lib/systemd/system/ethoscope_backup_unified.service.d").exists()
    # the unit as the upstream installer left it (enabling a linked unit links it into /etc too)
    assert box.exec(["readlink", "/etc/systemd/system/" + UPSTREAM]).stdout.strip().startswith("/opt/ethoscope/")
    for unit in (UPSTREAM, "ethoscope_backup_video.service"):
        assert box.systemctl("is-enabled", unit, check=False).stdout.strip() == "enabled", unit
    doc = wait_for(lambda: curl(box, 8093), 30, interval=0.3, what="the stand-in back on 8093")
    assert doc == {"stand_in": "unified"}, doc
    assert box.path("/ethoscope_data/results/.stand-in-unified").is_file() and stand_in_pids(box, "video")
