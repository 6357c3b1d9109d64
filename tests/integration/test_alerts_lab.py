"""Alerts end to end on the simulated lab: real passes over sshd/rsync, the real `alert` command, a
webhook listener and a stand-in sendmail. A device cut -> exactly one alert naming it; more failed
passes -> nothing new; restored -> exactly one recovery. A device that dropped out of discovery
and a destination filling up are reported once too."""
import json
import os
import subprocess
import time

from ethoscope_rsync.state.history import DeviceHistory, DiskSample, History, Usage
from ethoscope_rsync.state.store import save_history
from tests.integration.backup_node import PYTHON, ROOT, Node
from tests.listeners import Webhook, install_sendmail, mails

GONE = "9" * 32
HOUR = 3600.0


def alert(node, env, *args):
    p = subprocess.run([PYTHON, "-m", "ethoscope_rsync", "alert", "-c", str(node.conf), *args], cwd=ROOT,
                       env=env, capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    return p


def pass_and_alert(node, env, code):
    """A pass that must exit with `code`, then the alert command."""
    p = node.run()
    assert p.returncode == code, p.stderr
    alert(node, env)


def seed_history(node, now):
    """Before the first pass: a device seen three days ago that the node server no longer lists,
    and disk samples in which the destinations' file system lost 1 TB of free space every 2 hours."""
    stats, fs = os.statvfs(node.base), os.stat(node.base).st_dev
    free, total = stats.f_bavail * stats.f_frsize, stats.f_blocks * stats.f_frsize
    samples = [DiskSample(now - (4 - k) * 2 * HOUR, {kind: Usage(free + (4 - k) * 10 ** 12, total, 0, 0, fs)
                                                     for kind in ("results", "videos")}) for k in range(4)]
    history = History(devices={GONE: DeviceHistory(id=GONE, name="ETHOSCOPE_099", address="169.254.1.99",
                                                   last_success=now - 3 * 86400, last_outcome="completed")},
                      disk=samples)
    save_history(node.state / "history.json", history)


def test_one_alert_when_a_device_is_cut_one_recovery_when_it_is_back(make_lab, tmp_path):
    lab = make_lab(n_devices=2, populate=True)
    cut = lab.devices[1]
    with Webhook() as hook:
        node = Node(lab, tmp_path, extra='retries = 0\n[alert]\nmail_to = "lab@example.org"\nwebhook = %s\n'
                    'timeout = 5\n' % hook.url)
        node.conf.write_text(node.conf.read_text().replace("[ssh]\n", "[ssh]\nconnect_timeout = 2\n"))
        env = dict(os.environ, PATH="%s:%s" % (tmp_path / "bin", os.environ["PATH"]))
        install_sendmail(tmp_path / "bin", tmp_path / "spool")
        seed_history(node, now=time.time())

        first = node.run()
        assert first.returncode == 0, first.stderr
        assert "ETHOSCOPE_099: STALE" in first.stderr and "not found in this pass" in first.stderr
        assert "videos destination" in first.stderr and "full in" in first.stderr
        alert(node, env)
        (doc,) = hook.documents()                     # what was wrong before: the gone device, the disk
        assert {c["subject"]: c["problem"] for c in doc["changes"]} == {
            "device:" + GONE: "stale", "disk:results+videos": "filling"}
        assert "ETHOSCOPE_099" in doc["title"] and "not found in the last pass" in doc["text"]
        assert "results and videos: destination filling up" in doc["text"] and "add a disk" in doc["text"]

        lab.cut_link(cut)
        pass_and_alert(node, env, 1)
        assert len(hook.requests) == 2
        doc = hook.documents()[1]
        assert doc["event"] == "alert" and [c["name"] for c in doc["changes"]] == [cut.name]
        change = doc["changes"][0]
        assert change["problem"] == "failed" and change["device_id"] == cut.id and change["since"] > 0
        assert change["detail"] and "\n" not in change["detail"]
        assert "ethoscope-backup check -e %s" % cut.name in doc["text"] and "last error: " in doc["text"]
        assert len(mails(tmp_path / "spool")) == 2
        mail = mails(tmp_path / "spool")[1]
        assert mail.startswith("ARGS: -oi -- lab@example.org\n") and "PROBLEM: %s" % cut.name in mail

        for _ in range(2):                            # still cut: failed passes, nothing new to say
            pass_and_alert(node, env, 1)
        assert len(hook.requests) == 2 and len(mails(tmp_path / "spool")) == 2
        state = json.loads((node.state / "alerts.json").read_text())["subjects"]
        assert state["device:" + cut.id][0] == "failed"

        lab.restore_link(cut)
        pass_and_alert(node, env, 0)
        assert len(hook.requests) == 3
        doc = hook.documents()[2]
        assert doc["event"] == "recovery" and [(c["name"], c["recovered"]) for c in doc["changes"]] == \
            [(cut.name, True)]
        assert "recovered: %s" % cut.name in doc["title"]
        alert(node, env)                              # and once only
        assert len(hook.requests) == 3 and len(mails(tmp_path / "spool")) == 3


def test_alert_test_message_and_a_broken_webhook_is_only_a_warning(make_lab, tmp_path):
    lab = make_lab(n_devices=1, populate=False)
    node = Node(lab, tmp_path, extra="[alert]\nwebhook = http://127.0.0.1:9/nothing-listens\ntimeout = 2\n")
    env = dict(os.environ)
    p = subprocess.run([PYTHON, "-m", "ethoscope_rsync", "alert", "--test", "-c", str(node.conf)], cwd=ROOT,
                       env=env, capture_output=True, text=True, timeout=60)
    assert p.returncode == 1 and "alert not delivered: webhook 127.0.0.1" in p.stderr
    with Webhook() as hook:
        node.conf.write_text(node.conf.read_text().replace("http://127.0.0.1:9/nothing-listens", hook.url))
        p = subprocess.run([PYTHON, "-m", "ethoscope_rsync", "alert", "--test", "-c", str(node.conf)], cwd=ROOT,
                           env=env, capture_output=True, text=True, timeout=60)
        assert p.returncode == 0, p.stderr
        assert hook.documents()[0]["event"] == "test"
    lab.cut_link(lab.devices[0])
    node.conf.write_text(node.conf.read_text().replace(hook.url, "http://127.0.0.1:9/nothing-listens"))
    assert node.run().returncode == 1
    p = alert(node, env)                          # the device's alert could not go out: still exit 0
    assert "alert not delivered: webhook" in p.stderr and "ALERT %s" % lab.devices[0].name in p.stderr
    (pending,) = json.loads((node.state / "alerts.json").read_text())["undelivered"]
    assert pending["channel"] == "webhook" and lab.devices[0].name in pending["subject"]

    with Webhook(answer=(500, {})) as hook:       # the endpoint is back but failing: kept, tried once per run
        node.conf.write_text(node.conf.read_text().replace("http://127.0.0.1:9/nothing-listens", hook.url))
        p = alert(node, env)
        assert len(hook.requests) == 1 and "alert not delivered: webhook 127.0.0.1: HTTP 500" in p.stderr
        hook.answer = (204, {})                   # and working: the message arrives late, once
        p = alert(node, env)
        assert len(hook.requests) == 2 and "alert delivered late by webhook" in p.stderr
        late = hook.documents()[1]
        assert late["event"] == "alert" and late["delayed_since"] == pending["since"]
        assert [c["name"] for c in late["changes"]] == [lab.devices[0].name]
        alert(node, env)
        assert len(hook.requests) == 2
    assert json.loads((node.state / "alerts.json").read_text())["undelivered"] == []
