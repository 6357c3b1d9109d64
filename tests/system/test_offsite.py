"""System test of the second copy (issue 25) in a booted Debian container with the package (and
restic, which it recommends) installed: the units ship off (timer disabled), verify cleanly and are
sandboxed; root's `offsite --init` writes a root-only random password and creates a repository the
service user owns; the service sends a snapshot of real passes' copies as the unprivileged user with
the password as a credential (never visible to the status service), then the alert service runs;
/status and `status` show it; a run beside a pass; `systemctl stop` during an upload ends restic
cleanly (its lock removed) and the next run sends, while the password the service was handed
stays out of the status service's sight; the timer, once enabled, is scheduled.

Run as root: /usr/bin/python3 -m pytest -p no:cacheprovider tests/system/test_offsite.py
"""
import json
import os
import re
from pathlib import Path

import pytest

from tests.system.container import (BASE_PACKAGES, GUEST_DEB_DIR, Container, dependency_names, free_port, install,
                                    listen_on, rootfs_for, wait_for)

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (systemd-nspawn, network namespaces)")

PASS, ALERT, STATUS = "ethoscope-backup.service", "ethoscope-backup-alert.service", "ethoscope-backup-status.service"
OFFSITE, TIMER = "ethoscope-backup-offsite.service", "ethoscope-backup-offsite.timer"
REPOSITORY = "/srv/ethoscope-offsite"
PASSWORD = "/etc/ethoscope/keys/restic-password"
STATE = "/var/lib/ethoscope-backup/offsite.json"


@pytest.fixture(scope="module")
def port():
    return free_port()


@pytest.fixture(scope="module")
def box(deb, port, suite):
    assert "restic" in dependency_names(deb)              # Recommends: in the rootfs like a default install
    rootfs = rootfs_for(BASE_PACKAGES + dependency_names(deb), suite)
    with Container(rootfs, "ethoffsite%s%d" % (suite[0], os.getpid()),
                   binds_ro=[(str(deb.parent), GUEST_DEB_DIR)]) as c:
        listen_on(c, port)
        install(c, deb)
        c.systemctl("stop", "ethoscope-backup.timer")
        wait_for(lambda: c.systemctl("is-active", PASS, check=False).stdout.strip() != "activating", 120,
                 what="a timer-started pass to end")
        yield c
        print(c.sh("journalctl -b --no-pager -n 60 -u 'ethoscope-backup*'", check=False).stdout)


@pytest.fixture(scope="module")
def lab():
    from tests.lab import Lab
    with Lab("sysoff%d" % os.getpid(), 2) as lab:
        for device in lab.devices:
            lab.populate(device, experiments=1, db_rows=200, video_chunks=2, chunk_bytes=256 << 10)
        yield lab


@pytest.fixture(scope="module")
def configured(box, lab):
    box.write("/etc/ethoscope/keys/id_rsa", Path(lab.key_path).read_bytes(), mode=0o600)
    text = lab.config_text("/ethoscope_data/results", "/ethoscope_data/videos", "/run/ethoscope-backup/status.json",
                           "/var/lib/ethoscope-backup", "/var/lib/ethoscope-backup/known_hosts")
    text = re.sub(r"(?m)^key\s*=.*$", "key = /etc/ethoscope/keys/id_rsa", text)
    box.write("/etc/ethoscope/backup.conf",
              text + "[transfer]\ninterval = 1\n[offsite]\nrepository = %s\n" % REPOSITORY)
    box.write("/etc/systemd/system/%s.d/repository.conf" % OFFSITE,
              "[Service]\nReadWritePaths=%s\n[Unit]\nRequiresMountsFor=%s\n" % (REPOSITORY, REPOSITORY))
    box.sh("install -d -o ethoscope-backup -g ethoscope-backup %s && systemctl daemon-reload" % REPOSITORY)
    box.systemctl("start", PASS, timeout=300, check=False)
    assert box.show(PASS, "Result") == "success", box.sh("journalctl -b --no-pager -n 40 -u " + PASS).stdout
    return box


def run_offsite(box, expect="success"):
    """The service started as its timer would; returns when it (and the alert service it triggers) ended."""
    before = box.show(ALERT, "InvocationID")
    box.systemctl("start", OFFSITE, timeout=600, check=False)
    assert box.show(OFFSITE, "Result") == expect, box.sh("journalctl -b --no-pager -n 40 -u " + OFFSITE).stdout
    wait_for(lambda: box.show(ALERT, "InvocationID") not in ("", before)
             and box.show(ALERT, "ActiveState") in ("inactive", "failed"), 120, interval=0.3,
             what="the alert service triggered by the second copy")
    return json.loads(box.path(STATE).read_text())


def test_the_units_ship_off_verify_cleanly_and_are_sandboxed(box):
    units = ["/usr/lib/systemd/system/" + u for u in (OFFSITE, TIMER, "ethoscope-backup-verify.service", STATUS)]
    p = box.exec(["systemd-analyze", "verify", "--man=no"] + units, check=False)
    assert p.returncode == 0 and not (p.stdout + p.stderr).strip(), p.stdout + p.stderr
    assert box.systemctl("is-enabled", TIMER, check=False).stdout.strip() == "disabled"
    assert box.systemctl("is-active", TIMER, check=False).stdout.strip() == "inactive"
    assert box.systemctl("is-enabled", OFFSITE, check=False).stdout.strip() == "static"
    for unit in (OFFSITE, "ethoscope-backup-verify.service"):
        out = box.exec(["systemd-analyze", "security", "--no-pager", unit], check=False).stdout
        level = re.search(r"Overall exposure level for %s: (\d+\.\d+)" % re.escape(unit), out)
        assert level and float(level.group(1)) <= 2.0, out
    assert set(box.show(OFFSITE, "OnFailure").split()) == {ALERT} == set(box.show(OFFSITE, "OnSuccess").split())
    assert box.show(OFFSITE, "User") == "ethoscope-backup" and box.show(OFFSITE, "TimeoutStartUSec") == "1d 1h"


def test_without_offsite_configured_the_service_does_nothing(box):
    box.systemctl("start", OFFSITE, timeout=120, check=False)
    assert box.show(OFFSITE, "Result") == "success" and not box.path(STATE).exists()


def test_init_then_the_service_sends_as_the_service_user(configured, lab, port):
    box = configured
    init = box.exec(["ethoscope-backup", "offsite", "--init"], check=False)
    assert init.returncode == 0 and "created a random password in %s" % PASSWORD in init.stdout, \
        init.stdout + init.stderr
    assert box.sh("stat -c '%U %a' " + PASSWORD).stdout.split() == ["root", "600"]
    assert box.sh("stat -c %U " + REPOSITORY + "/config").stdout.strip() == "ethoscope-backup"

    state = run_offsite(box)
    assert state["outcome"] == "ok" and state["last"]["files"] >= 8 and state["held_back"] == 0
    entries = [json.loads(line) for line in box.exec(["journalctl", "--no-pager", "-o", "json", "-u", OFFSITE,
                                                      "OFFSITE_RESULT=ok"]).stdout.splitlines() if line.strip()]
    assert len(entries) == 1 and entries[0]["OFFSITE_SNAPSHOT"] == state["last"]["id"]
    listed = box.exec(["sh", "-c", "RESTIC_PASSWORD_FILE=%s restic -r %s --no-cache ls latest"
                       % (PASSWORD, REPOSITORY)]).stdout
    for device in lab.devices:
        assert "/ethoscope_data/results/%s/%s/" % (device.id, device.name) in listed
    assert "/." not in listed

    status = json.loads(box.exec(["curl", "-sf", "http://127.0.0.1:%d/status" % port]).stdout)
    assert status["offsite"]["snapshot"]["id"] == state["last"]["id"] and status["offsite"]["result"] == "ok"
    assert "second copy %s: newest snapshot" % REPOSITORY in box.exec(["ethoscope-backup", "status"]).stdout


def test_beside_a_pass(configured):
    box = configured
    box.systemctl("start", "--no-block", PASS)
    box.exec(["ethoscope-backup", "offsite"], timeout=300)          # by hand: sends now, due or not
    wait_for(lambda: box.show(PASS, "ActiveState") in ("inactive", "failed"), 300, what="the pass to end")
    assert box.show(PASS, "Result") == "success", box.sh("journalctl -b --no-pager -n 60 -u " + PASS).stdout
    assert json.loads(box.path(STATE).read_text())["outcome"] == "ok"


def restic_runs(box):
    """A restic process in the container (a minimal Debian has no pgrep)."""
    for comm in box.path("/proc").glob("[0-9]*/comm"):
        try:
            if comm.read_text().strip() == "restic":
                return True
        except OSError:          # gone meanwhile
            continue
    return False


def status_service_sees(box, port, folder):
    """What the status service's own view of the file system holds under `folder`."""
    box.exec(["curl", "-sf", "-o", "/dev/null", "http://127.0.0.1:%d/" % port])        # it runs now
    served_by = box.show(STATUS, "MainPID")
    assert served_by != "0"
    return box.exec(["nsenter", "-t", served_by, "-m", "ls", "-A", folder], check=False).stdout.split()


def test_a_stop_during_an_upload_ends_restic_cleanly_and_the_next_run_sends(configured, lab, port):
    box = configured
    device = lab.devices[0]
    folder = "/ethoscope_data/videos/%s/%s/2024-03-01_15-00-00" % (device.id, device.name)
    box.sh("install -d -o ethoscope-backup -g ethoscope-backup %s && head -c 24000000 /dev/urandom > %s/big.h264"
           " && chown ethoscope-backup: %s/big.h264" % (folder, folder, folder))
    conf = box.path("/etc/ethoscope/backup.conf")
    conf.write_text(conf.read_text() + "bwlimit = 1024\nafter_passes = 1\n")
    box.systemctl("start", PASS, timeout=300, check=False)     # one good pass since the newest snapshot: one is due
    assert box.show(PASS, "Result") == "success", box.sh("journalctl -b --no-pager -n 40 -u " + PASS).stdout
    box.systemctl("start", "--no-block", OFFSITE)
    wait_for(lambda: restic_runs(box) and '"outcome":"running"' in box.path(STATE).read_text()
             and list(box.path(REPOSITORY + "/locks").iterdir()), 120, what="the upload to start (restic's lock taken)")
    handed = box.sh("ls -A /run/credentials/%s" % OFFSITE).stdout.split()
    assert handed == ["restic-environment", "restic-password", "ssh-key"]
    assert status_service_sees(box, port, "/run/credentials") == []        # never the password, not even now
    assert status_service_sees(box, port, "/etc/ethoscope/keys") == []
    assert box.sh("ls -A /etc/ethoscope/keys").stdout.split() == ["id_rsa", "restic-password"]
    box.systemctl("stop", OFFSITE, timeout=120)
    assert box.show(OFFSITE, "ActiveState") == "inactive" and box.show(OFFSITE, "Result") == "success"
    state = json.loads(box.path(STATE).read_text())
    assert state["outcome"] == "interrupted", state
    assert box.sh("ls -A %s/locks" % REPOSITORY).stdout.strip() == "", (        # restic removed its lock
        box.sh("journalctl -b --no-pager -o short-precise -n 30 -u " + OFFSITE).stdout)
    conf.write_text(conf.read_text().replace("bwlimit = 1024\nafter_passes = 1\n", ""))
    again = box.exec(["ethoscope-backup", "offsite"], timeout=300, check=False)    # by hand, as root: handed over
    assert again.returncode == 0, again.stderr
    assert json.loads(box.path(STATE).read_text())["outcome"] == "ok"
    assert box.sh("ls -A %s/locks" % REPOSITORY).stdout.strip() == ""
    assert "big.h264" in box.exec(["sh", "-c", "RESTIC_PASSWORD_FILE=%s restic -r %s --no-cache ls latest"
                                   % (PASSWORD, REPOSITORY)]).stdout


def test_the_timer_once_enabled_is_scheduled(configured):
    box = configured
    box.systemctl("enable", "--now", TIMER)
    try:
        assert box.show(TIMER, "ActiveState") == "active" and box.show(TIMER, "NextElapseUSecRealtime")
    finally:
        box.systemctl("disable", "--now", TIMER)
