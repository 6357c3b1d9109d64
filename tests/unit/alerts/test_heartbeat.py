"""The heartbeat's conditions, from documents the real store wrote: passes overdue, a pass running too
long or silent, the timer off while a switch is on; nothing expected while every switch is off."""
from pathlib import Path

from tests.fixtures.status import NOW, build, example_pass, scripted_pass
from ethoscope_rsync.alerts import heartbeat
from ethoscope_rsync.alerts.conditions import transitions
from ethoscope_rsync.config.load import load_config
from ethoscope_rsync.render import alert as render_alert
from ethoscope_rsync.state.alerts import KEY_WAIT, LONG_PASS, OVERDUE, TIMER_OFF
from ethoscope_rsync.state.history import History
from ethoscope_rsync.state.model import Status

UNIFIED = ("ethoscope_backup_unified",)


def config(tmp_path, extra=""):
    path = tmp_path / "backup.conf"
    path.write_text(f"[paths]\nupstream_config = {tmp_path}/none\n[status]\noverdue_after = 1800\n{extra}")
    return load_config(path)


def records(status, history):
    return History.from_json(history), Status.from_json(status)


def beat(tmp_path, status, history, now, systemd=False, switches=(), timer=lambda: "active", extra=""):
    h, s = records(status, history)
    return {c.subject: c for c in heartbeat.conditions(config(tmp_path, extra), h, s, now, systemd=systemd,
                                                       switches=switches, timer=timer)}


def test_passes_overdue_then_back(tmp_path):
    status, history = build(scripted_pass(2, failing=0, now=NOW - 600))
    assert beat(tmp_path, status, history, NOW)["passes"].problem == ""
    late = beat(tmp_path, status, history, NOW + 3600)["passes"]
    assert late.problem == OVERDUE and "no pass has ended for" in late.detail
    changes, state = transitions({}, [late])
    assert len(changes) == 1 and "passes overdue" in render_alert.describe(changes[0], NOW + 3600)
    again, _ = transitions(state, [beat(tmp_path, status, history, NOW)["passes"]])
    assert again[0].recovered and "passes end again" in render_alert.describe(again[0], NOW)


def test_a_pass_running_too_long_or_silent(tmp_path):
    status, history = build(example_pass(running=True), finish=False)
    started, generated = status["run"]["started"], status["generated"]
    assert beat(tmp_path, status, history, generated + 60)["passes"].problem == ""
    silent = beat(tmp_path, status, history, generated + 7200)["passes"]
    assert silent.problem == LONG_PASS and "written nothing" in silent.detail
    status["generated"] = started + 30000                   # still writing, but a copy runs for over 6 hours
    long = beat(tmp_path, status, history, started + 30060)["passes"]
    copying = [d for d in status["devices"].values() if d["state"] == "running"]
    assert copying and long.problem == LONG_PASS and "longer than [alert] pass_limit" in long.detail
    assert copying[0]["name"] in long.detail
    assert beat(tmp_path, status, history, started + 30060, extra="[alert]\npass_limit = 0\n")["passes"].problem == ""
    for device in copying:                                  # a long scheduled pass whose copies are recent
        device["started"] = started + 29000
    assert beat(tmp_path, status, history, started + 30060)["passes"].problem == ""


def test_timer_off_while_a_switch_is_on(tmp_path):
    status, history = build(scripted_pass(2, failing=0, now=NOW - 600))
    found = beat(tmp_path, status, history, NOW, systemd=True, switches=UNIFIED, timer=lambda: "inactive")
    assert found["timer"].problem == TIMER_OFF and "ethoscope_backup_unified" in found["timer"].detail
    assert beat(tmp_path, status, history, NOW, systemd=True, switches=UNIFIED)["timer"].problem == ""
    found = beat(tmp_path, status, history, NOW, systemd=True, switches=UNIFIED, timer=lambda: "")
    assert found["timer"].problem is None
    off = beat(tmp_path, status, history, NOW + 86400, systemd=True, switches=(), timer=lambda: "inactive")
    assert off["timer"].problem == "" and off["passes"].problem == ""      # switched off: nothing expected
    assert "timer" not in beat(tmp_path, status, history, NOW, systemd=False)   # the daemon: no timer


def test_nothing_ran_yet_is_unknown(tmp_path):
    assert beat(tmp_path, None, None, NOW)["passes"].problem is None


def test_the_switch_folder_is_read_under_systemd(tmp_path, monkeypatch):
    folder = tmp_path / "switch"
    (folder / "ethoscope_backup_video").mkdir(parents=True)
    monkeypatch.setattr(heartbeat, "SWITCH_DIR", Path(folder))
    status, history = build(scripted_pass(2, failing=0, now=NOW - 600))
    h, s = records(status, history)
    found = heartbeat.conditions(config(tmp_path), h, s, NOW, systemd=True, timer=lambda: "failed")
    assert [c.problem for c in found] == ["", TIMER_OFF]


def test_a_pass_waiting_for_the_key_is_alerted_in_words(tmp_path):
    from ethoscope_rsync.alerts.conditions import pass_condition
    from ethoscope_rsync.backup.keywait import WAITING
    from ethoscope_rsync.state.model import Pass
    status = Status(run=Pass(pid=1, started=NOW, ended=NOW, outcome=WAITING,
                             message="waiting for the SSH key /etc/ethoscope/keys/id_rsa: put it there"))
    found = pass_condition(status, {"MONITOR_SERVICE_RESULT": "success", "MONITOR_EXIT_STATUS": "0"}, NOW)
    assert found.problem == KEY_WAIT and "/etc/ethoscope/keys/id_rsa" in found.detail
    changes, _ = transitions({}, [found])
    text = render_alert.describe(changes[0], NOW)
    assert "waiting for the SSH key" in text and "authorized_keys" in text


def test_a_unit_that_failed_before_our_code_is_said_in_words():
    from ethoscope_rsync.alerts.conditions import pass_condition
    found = pass_condition(Status(), {"MONITOR_SERVICE_RESULT": "exit-code", "MONITOR_EXIT_STATUS": "243"}, NOW)
    assert found.problem == "pass failed" and "SSH key /etc/ethoscope/keys/id_rsa" in found.detail
    assert "status 243" not in found.detail
