"""A whole lab failing at once, through the real channels: a webhook listener and a stand-in sendmail get
one bounded message each, alerts.json is written, and the next run sends nothing again."""
import json
import os
import time

from ethoscope_rsync.alerts.report import run_alerts
from ethoscope_rsync.alerts.channels import MAX_BODY
from ethoscope_rsync.config.load import load_config
from tests.fixtures.status import build, scripted_pass, write_json
from tests.listeners import Webhook, install_sendmail, mails


def test_a_hundred_failing_devices_one_message_per_channel_state_saved(tmp_path, monkeypatch):
    install_sendmail(tmp_path / "bin", tmp_path / "spool")
    monkeypatch.setenv("PATH", "%s:%s" % (tmp_path / "bin", os.environ["PATH"]))
    status, history = build(scripted_pass(100, failing=1.0, now=time.time() - 60))
    for key, device in status["devices"].items():           # what devices might say, at its worst
        device["error"] = "lost <!channel> \x1b[2J" + "e" * 2000
    state = tmp_path / "state"
    state.mkdir()
    write_json(tmp_path / "status.json", status)
    write_json(state / "history.json", history)
    with Webhook() as hook:
        conf = tmp_path / "backup.conf"
        conf.write_text(f'[paths]\nstatus_file = {tmp_path}/status.json\nstate_dir = {state}\n'
                        f'results = {tmp_path}/r\nvideos = {tmp_path}/v\nupstream_config = {tmp_path}/none\n'
                        f'[alert]\nmail_to = "lab@example.org"\nwebhook = {hook.url}\ntimeout = 5\n')
        config = load_config(conf)
        assert run_alerts(config, {}, time.time()) == 0
        assert run_alerts(config, {}, time.time() + 60) == 0         # nothing changed: nothing re-sent
    (request,) = hook.requests
    assert len(request["body"]) <= MAX_BODY
    doc = json.loads(request["body"])
    assert doc["total"] >= 100 and "<!channel>" not in doc["text"] and "\x1b" not in doc["text"]
    (mail,) = mails(tmp_path / "spool")
    assert "100 PROBLEMS" in mail and "\x1b" not in mail and len(mail.encode()) < 2 * MAX_BODY
    saved = json.loads((state / "alerts.json").read_text())
    assert saved and not saved.get("undelivered")
