"""System test of the heartbeat (issue 22 item 2) in a booted Debian 12 and 13 container with the package
installed: its timer is enabled and active, its unit verifies and is sandboxed; with a switch on and
passes that stopped (the backup timer's next pass hours away, the last pass two hours old), the
heartbeat service sends exactly one "passes overdue" alert to a webhook on the host, nothing more on
its next run, and one recovery once a pass has ended; it sees the backup timer active from its sandbox.

Run as root: /usr/bin/python3 -m pytest -p no:cacheprovider tests/system/test_heartbeat.py
"""
import json
import os
import re
import time

import pytest

from tests.fixtures.status import build, scripted_pass
from tests.listeners import Webhook
from tests.system.container import (BASE_PACKAGES, GUEST_DEB_DIR, Container, dependency_names, free_port, install,
                                    listen_on, rootfs_for, wait_for)

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (systemd-nspawn)")

HEART, HEART_TIMER = "ethoscope-backup-heartbeat.service", "ethoscope-backup-heartbeat.timer"
TIMER = "ethoscope-backup.timer"
SWITCH = "ethoscope_backup_unified.service"
STATUS, HISTORY = "/run/ethoscope-backup/status.json", "/var/lib/ethoscope-backup/history.json"


@pytest.fixture(scope="module")
def hook(suite):          # one per release: each counts its own alerts
    with Webhook() as hook:
        yield hook


@pytest.fixture(scope="module")
def box(deb, hook, suite):
    rootfs = rootfs_for(BASE_PACKAGES + dependency_names(deb), suite)
    with Container(rootfs, "ethbeat%s%d" % (suite[0], os.getpid()), binds_ro=[(str(deb.parent), GUEST_DEB_DIR)]) as c:
        listen_on(c, "127.0.0.1:%d" % free_port())
        # Passes that stopped: the backup timer's next pass is hours away.
        c.write("/etc/systemd/system/ethoscope-backup.timer.d/test-late.conf",
                "[Timer]\nOnBootSec=\nOnBootSec=10h\nOnUnitInactiveSec=\nOnUnitInactiveSec=10h\n")
        install(c, deb)
        c.write("/etc/ethoscope/backup.conf", "[node]\nserver =\n[status]\noverdue_after = 1800\n"
                "[alert]\nwebhook = %s\nwebhook_format = slack\ntimeout = 5\n" % hook.url)
        yield c
        print(c.sh("journalctl -b --no-pager -n 60 -u 'ethoscope-backup*'", check=False).stdout)


def write_pass(box, ended):
    status, history = build(scripted_pass(2, failing=0, now=ended))
    status["run"]["pid"] = 1
    for path, doc in ((STATUS, status), (HISTORY, history)):
        box.write(path, json.dumps(doc))
        box.sh("chown ethoscope-backup: %s" % path)


def heartbeat(box):
    """One run of the heartbeat service, as its timer starts it."""
    before = box.show(HEART, "InvocationID")
    box.systemctl("start", HEART, timeout=120, check=False)
    wait_for(lambda: box.show(HEART, "InvocationID") not in ("", before)
             and box.show(HEART, "ActiveState") in ("inactive", "failed"), 60, interval=0.3, what="the heartbeat run")
    assert box.show(HEART, "Result") == "success", box.sh("journalctl -b --no-pager -u %s" % HEART, check=False).stdout
    return box.sh("journalctl -b --no-pager -o cat -u %s" % HEART, check=False).stdout


def test_the_heartbeat_timer_is_enabled_active_and_its_unit_sandboxed(box):
    assert box.systemctl("is-enabled", HEART_TIMER, check=False).stdout.strip() == "enabled"
    assert box.systemctl("is-active", HEART_TIMER, check=False).stdout.strip() == "active"
    p = box.exec(["systemd-analyze", "verify", "--man=no", "/lib/systemd/system/" + HEART,
                  "/lib/systemd/system/" + HEART_TIMER], check=False)
    assert p.returncode == 0 and not (p.stdout + p.stderr).strip(), p.stdout + p.stderr
    out = box.exec(["systemd-analyze", "security", "--no-pager", HEART], check=False).stdout
    level = re.search(r"Overall exposure level for %s: (\d+\.\d+)" % re.escape(HEART), out)
    assert level and float(level.group(1)) <= 2.0, out


def test_passes_that_stopped_alert_once_and_recover_once(box, hook):
    write_pass(box, time.time() - 7200)
    box.systemctl("stop", SWITCH)                            # the install switched the backups on: off now
    log = heartbeat(box)                                     # every switch off: no pass is expected
    assert hook.requests == [] and log.count("heartbeat: passes: ok; timer: ok") == 1
    box.systemctl("start", SWITCH)
    assert box.systemctl("is-active", TIMER, check=False).stdout.strip() == "active"
    log = heartbeat(box)
    assert len(hook.requests) == 1, log
    text = hook.documents()[0]["text"]
    assert re.search(r"passes overdue: no pass has ended for 2\.\d h \(overdue\)", text)
    assert "systemctl status ethoscope-backup.timer" in text
    assert "heartbeat: passes: passes overdue; timer: ok" in log      # the timer seen active from the sandbox
    box.systemctl("stop", TIMER)                             # the switch goes with it (BindsTo=): nothing expected
    assert box.systemctl("is-active", SWITCH, check=False).stdout.strip() == "inactive"
    box.systemctl("start", SWITCH)
    heartbeat(box)
    assert len(hook.requests) == 1                           # still overdue: nothing new
    write_pass(box, time.time() - 60)
    heartbeat(box)
    assert len(hook.requests) == 2 and "passes end again" in hook.documents()[1]["text"]


PASS = "ethoscope-backup.service"
KEY = "/etc/ethoscope/keys/id_rsa"


def test_a_pass_before_the_key_waits_says_so_and_runs_once_it_is_there(box, hook):
    """Installed and switched on before README step 1: the pass the timer starts does not fail with
    status 243; it says it waits for the key (status, one alert, ethoscope-backup status), exits 0 so
    that the timer goes on; once the key is in place the next pass runs our code."""
    assert not box.path(KEY).exists()
    sent = len(hook.requests)
    box.systemctl("start", PASS, timeout=120, check=False)           # what the timer does
    assert box.show(PASS, "Result") == "success", box.sh("journalctl -b --no-pager -u %s" % PASS, check=False).stdout
    assert json.loads(box.path(STATUS).read_text())["run"]["outcome"] == "waiting for the SSH key"
    wait_for(lambda: len(hook.requests) > sent, 60, interval=0.3, what="the alert after that pass (OnSuccess=)")
    text = hook.documents()[sent]["text"]
    assert "waiting for the SSH key %s" % KEY in text and "243" not in text and "authorized_keys" in text
    shown = box.exec(["ethoscope-backup", "status"], check=False)
    assert shown.returncode == 1 and "waiting for the SSH key %s" % KEY in shown.stdout.splitlines()[0]
    box.sh("install -d -m 700 /etc/ethoscope/keys && ssh-keygen -q -t ed25519 -N '' -f %s" % KEY)
    box.systemctl("start", PASS, timeout=120, check=False)
    assert box.show(PASS, "Result") == "exit-code"                 # our pass ran: no device configured yet
    assert json.loads(box.path(STATUS).read_text())["run"]["outcome"] == "discovery failed"
    journal = box.sh("journalctl -b --no-pager -o cat -u %s" % PASS, check=False).stdout
    assert "no node server configured" in journal and "243" not in journal
