"""The webhook's presets, its auth header and the dead-man's switch, against a real HTTP listener: ntfy
gets plain text with its headers and the token, the ping comes once per good pass (and again after a
failed one only when a pass ends well)."""
import json
import time

from ethoscope_rsync.alerts.report import run_alerts
from ethoscope_rsync.config.load import load_config
from tests.fixtures.status import build, scripted_pass, write_json
from tests.listeners import Webhook


def node(tmp_path, hook, extra, failing=0.0):
    state = tmp_path / "state"
    state.mkdir(exist_ok=True)
    status, history = build(scripted_pass(3, failing=failing, now=time.time() - 60))
    write_json(tmp_path / "status.json", status)
    write_json(state / "history.json", history)
    (tmp_path / "token").write_text("tk_secret42\n")
    conf = tmp_path / "backup.conf"
    conf.write_text(f"[paths]\nstatus_file = {tmp_path}/status.json\nstate_dir = {state}\n"
                    f"results = {tmp_path}/r\nvideos = {tmp_path}/v\nupstream_config = {tmp_path}/none\n"
                    f"[alert]\ntimeout = 5\nwebhook_auth_file = {tmp_path}/token\n{extra}")
    return load_config(conf), status


def test_ntfy_preset_with_its_token(tmp_path):
    with Webhook(answer=(200, {})) as hook:
        config, _ = node(tmp_path, hook, f"webhook = {hook.url}\nwebhook_format = ntfy\n", failing=1.0)
        run_alerts(config, {}, time.time())
    (post,) = [r for r in hook.requests if r.get("method") != "GET"]
    assert post["headers"]["Authorization"] == "Bearer tk_secret42"
    assert post["headers"]["Content-Type"].startswith("text/plain") and post["headers"]["Priority"] == "high"
    assert post["headers"]["Title"].startswith("ethoscope backup on ") and b"ETHOSCOPE_001" in post["body"]
    assert not post["body"].startswith(b"{")


def test_ping_once_per_good_pass(tmp_path):
    with Webhook(answer=(200, {})) as hook:
        config, status = node(tmp_path, hook, f"ping_url = {hook.url}?rid=1\n")
        run_alerts(config, {}, time.time())
        run_alerts(config, {}, time.time())                     # the same pass: not pinged again
        pings = [r for r in hook.requests if r.get("method") == "GET"]
        assert len(pings) == 1 and pings[0]["path"] == "/hook?rid=1"
        assert pings[0]["headers"]["Authorization"] == "Bearer tk_secret42"
        status["run"]["ended"] += 300                            # the next good pass
        write_json(tmp_path / "status.json", status)
        run_alerts(config, {}, time.time())
        status["run"].update(ended=status["run"]["ended"] + 300, outcome="failed")
        write_json(tmp_path / "status.json", status)
        run_alerts(config, {}, time.time())                      # a failed pass: no ping
    assert len([r for r in hook.requests if r.get("method") == "GET"]) == 2


def test_a_long_scheduled_pass_pings_after_each_whole_round(tmp_path):
    """A straggler keeps a scheduled pass running for hours: the heartbeat's alert run pings for each round
    of it in which every device was copied (the history's last backup), not while a device's copy failed."""
    with Webhook(answer=(200, {})) as hook:
        config, status = node(tmp_path, hook, f"ping_url = {hook.url}\n")
        history_file = tmp_path / "state" / "history.json"
        history = json.loads(history_file.read_text())
        status["run"].update(outcome="running", ended=0.0)
        write_json(tmp_path / "status.json", status)
        run_alerts(config, {}, time.time(), heartbeat=True)         # the rounds before: pinged once
        run_alerts(config, {}, time.time(), heartbeat=True)         # no new round: not again
        history["last_backup"] += 120                                # a new round ended
        write_json(history_file, history)
        run_alerts(config, {}, time.time(), heartbeat=True)
        assert len([r for r in hook.requests if r.get("method") == "GET"]) == 2
        history["last_backup"] += 120
        write_json(history_file, history)
        next(iter(status["devices"].values()))["state"] = "error"   # but a device's last copy failed
        write_json(tmp_path / "status.json", status)
        run_alerts(config, {}, time.time(), heartbeat=True)
    assert len([r for r in hook.requests if r.get("method") == "GET"]) == 2


def test_an_unreachable_ping_is_tried_after_the_next_run(tmp_path):
    with Webhook(answer=(500, {})) as hook:
        config, _ = node(tmp_path, hook, f"ping_url = {hook.url}\n")
        run_alerts(config, {}, time.time())
        hook.answer = (200, {})
        run_alerts(config, {}, time.time())
        run_alerts(config, {}, time.time())
    assert len([r for r in hook.requests if r.get("method") == "GET"]) == 2     # failed, then delivered once
