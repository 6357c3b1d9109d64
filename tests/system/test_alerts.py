"""System test of issue 14 in a booted Debian 12 container with the package installed: the alert
service started by OnFailure=/OnSuccess= of real passes against the simulated lab. A device cut ->
exactly one alert naming it (webhook on a listener on the host, mail through a stand-in sendmail
on PATH); more failed passes -> nothing new; restored -> exactly one recovery. Also: the new units
verify cleanly and are sandboxed, the verification timer ships disabled, verify runs in its unit.

Run as root: /usr/bin/python3 -m pytest -p no:cacheprovider tests/system/test_alerts.py
"""
import json
import os
import re
from pathlib import Path

import pytest

from tests.listeners import Webhook, sendmail_script
from tests.system.container import (BASE_PACKAGES, GUEST_DEB_DIR, Container, dependency_names, free_port, install,
                                    listen_on, rootfs_for, wait_for)

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (systemd-nspawn, network namespaces)")

PASS, ALERT = "ethoscope-backup.service", "ethoscope-backup-alert.service"
VERIFY, VERIFY_TIMER = "ethoscope-backup-verify.service", "ethoscope-backup-verify.timer"
NEW_UNITS = (ALERT, VERIFY, VERIFY_TIMER)
SPOOL = "/var/lib/ethoscope-backup/test-mail"      # writable in the alert service's sandbox


@pytest.fixture(scope="module")
def box(deb, suite):
    """The package (conftest's `deb`) installed in a booted container (status socket on a free port,
    timer stopped)."""
    rootfs = rootfs_for(BASE_PACKAGES + dependency_names(deb), suite)
    with Container(rootfs, "ethalert%s%d" % (suite[0], os.getpid()), binds_ro=[(str(deb.parent), GUEST_DEB_DIR)]) as c:
        listen_on(c, free_port())
        install(c, deb)
        c.systemctl("stop", "ethoscope-backup.timer")
        wait_for(lambda: c.systemctl("is-active", PASS, check=False).stdout.strip() != "activating", 120,
                 what="a timer-started pass to end")
        yield c
        print(c.sh("journalctl -b --no-pager -n 80 -u 'ethoscope-backup*'", check=False).stdout)


@pytest.fixture(scope="module")
def lab():
    from tests.lab import Lab
    with Lab("sysalert%d" % os.getpid(), 2) as lab:
        for device in lab.devices:
            lab.populate(device, experiments=1, db_rows=200, video_chunks=2, chunk_bytes=64 << 10)
        yield lab


@pytest.fixture(scope="module")
def hook():
    with Webhook() as hook:
        yield hook


@pytest.fixture(scope="module")
def configured(box, lab, hook):
    box.write("/etc/ethoscope/keys/id_rsa", Path(lab.key_path).read_bytes(), mode=0o600)
    text = lab.config_text("/ethoscope_data/results", "/ethoscope_data/videos", "/run/ethoscope-backup/status.json",
                           "/var/lib/ethoscope-backup", "/var/lib/ethoscope-backup/known_hosts")
    text = re.sub(r"(?m)^key\s*=.*$", "key = /etc/ethoscope/keys/id_rsa", text)
    text = text.replace("[ssh]\n", "[ssh]\nconnect_timeout = 2\n")
    text += ("[transfer]\nretries = 0\nio_timeout = 15\ninterval = 1\n[alert]\nmail_to = \"lab@example.org\"\n"
             "webhook = %s\ntimeout = 5\n" % hook.url)
    box.write("/etc/ethoscope/backup.conf", text)
    box.write("/usr/local/bin/sendmail", sendmail_script(Path(SPOOL)), mode=0o755)
    box.sh("install -d -o ethoscope-backup -g ethoscope-backup %s" % SPOOL)
    return box


def mail_count(box):
    return len([p for p in box.path(SPOOL).iterdir() if p.name.startswith("mail-")])


def pass_then_alert(box, expect):
    """One pass started as the timer would; returns once the alert service it triggered has ended."""
    before = box.show(ALERT, "InvocationID")
    box.systemctl("start", PASS, timeout=300, check=False)
    assert box.show(PASS, "Result") == expect, box.sh("journalctl -b --no-pager -n 40 -u %s" % PASS, check=False).stdout
    wait_for(lambda: box.show(ALERT, "InvocationID") not in ("", before)
             and box.show(ALERT, "ActiveState") in ("inactive", "failed"), 120, interval=0.3,
             what="the alert service triggered by the pass")
    assert box.show(ALERT, "Result") == "success", box.sh("journalctl -b --no-pager -u %s" % ALERT, check=False).stdout


def test_new_units_installed_verified_and_sandboxed(box):
    for unit in NEW_UNITS:
        assert box.path("/usr/lib/systemd/system/" + unit).is_file(), unit
    p = box.exec(["systemd-analyze", "verify", "--man=no"]
                 + ["/usr/lib/systemd/system/" + u for u in NEW_UNITS + (PASS,)], check=False)
    assert p.returncode == 0 and not (p.stdout + p.stderr).strip(), p.stdout + p.stderr
    assert box.systemctl("is-enabled", VERIFY_TIMER, check=False).stdout.strip() == "disabled"
    assert box.systemctl("is-active", VERIFY_TIMER, check=False).stdout.strip() == "inactive"
    for unit in (ALERT, VERIFY):
        assert box.systemctl("is-enabled", unit, check=False).stdout.strip() == "static", unit
        out = box.exec(["systemd-analyze", "security", "--no-pager", unit], check=False).stdout
        level = re.search(r"Overall exposure level for %s: (\d+\.\d+)" % re.escape(unit), out)
        assert level and float(level.group(1)) <= 2.0, out
    assert set(box.show(PASS, "OnFailure").split()) == {ALERT} and set(box.show(PASS, "OnSuccess").split()) == {ALERT}


def test_cut_device_one_alert_then_one_recovery(configured, lab, hook):
    box, cut = configured, lab.devices[1]
    pass_then_alert(box, "success")
    assert hook.requests == [] and mail_count(box) == 0           # all well: nothing to say

    lab.cut_link(cut)
    pass_then_alert(box, "exit-code")
    assert len(hook.requests) == 1 and mail_count(box) == 1
    doc = hook.documents()[0]
    assert [(c["name"], c["problem"], c["device_id"]) for c in doc["changes"]] == [(cut.name, "failed", cut.id)]
    assert cut.name in doc["title"] and "what to do" in doc["text"]
    mail = box.path(SPOOL + "/mail-0").read_text()
    assert mail.startswith("ARGS: -oi -- lab@example.org") and "PROBLEM: %s" % cut.name in mail
    entries = [json.loads(line) for line in box.exec(
        ["journalctl", "--no-pager", "-o", "json", "-u", ALERT, "ALERT=failed"]).stdout.splitlines() if line.strip()]
    assert [(e["DEVICE_NAME"], e["DEVICE_ID"], e["PRIORITY"]) for e in entries] == [(cut.name, cut.id, "3")]

    for _ in range(2):
        pass_then_alert(box, "exit-code")
    assert len(hook.requests) == 1 and mail_count(box) == 1

    lab.restore_link(cut)
    pass_then_alert(box, "success")
    assert len(hook.requests) == 2 and mail_count(box) == 2
    doc = hook.documents()[1]
    assert doc["event"] == "recovery" and [(c["name"], c["recovered"]) for c in doc["changes"]] == [(cut.name, True)]


def test_verify_runs_in_its_unit_and_status_shows_the_disk(configured, lab):
    box = configured
    box.systemctl("start", VERIFY, timeout=300, check=False)
    assert box.show(VERIFY, "Result") == "success", \
        box.sh("journalctl -b --no-pager -u %s" % VERIFY, check=False).stdout
    records = json.loads(box.path("/var/lib/ethoscope-backup/verify.json").read_text())["devices"]
    assert {d.id for d in lab.devices} <= set(records)
    assert box.sh("stat -c %U /var/lib/ethoscope-backup/verify.json").stdout.strip() == "ethoscope-backup"
    table = box.exec(["ethoscope-backup", "status"]).stdout
    assert re.search(r"(?m)^videos +/ethoscope_data/videos: .* used by backups", table), table
