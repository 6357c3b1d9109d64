"""Alerts: the conditions of devices, destinations and the pass, the transitions between them (pure),
and the words of the messages."""
import json

import pytest

from ethoscope_rsync.alerts import conditions as alerts
from ethoscope_rsync.state import alerts as recorded
from ethoscope_rsync.render import alert as render_alert
from ethoscope_rsync.state.alerts import FAILED, FILLING, PASS_FAILED, STALE, Change, Condition
from ethoscope_rsync.state.model import DeviceRun, Pass, Status
from ethoscope_rsync.state.history import DeviceHistory, DiskSample, History, PassSummary, Usage

DAY = 86400.0
NOW = 1_800_000_000.0
A, B = "a" * 32, "b" * 32


def device(name, outcomes, last_success, error="connection timed out"):
    passes = [PassSummary(NOW - (len(outcomes) - i) * 300, o, 10 if o == "completed" else 0)
              for i, o in enumerate(outcomes)]
    return DeviceHistory(id=name[-3:] * 10 + "xx", name=name, last_success=last_success,
                         last_outcome=outcomes[-1] if outcomes else "", last_error=error, passes=passes)


def conditions(history, status=None, failures=1):
    status = status or Status(run=Pass(pid=1, ended=NOW), devices={k: DeviceRun(k, d.name, "")
                                                                   for k, d in history.devices.items()})
    return {c.subject: c for c in alerts.device_conditions(history, status, NOW, DAY, failures)}


def test_a_good_device_a_failing_one_and_a_stale_one():
    history = History(devices={"ok": device("ETHOSCOPE_001", ["completed", "completed"], NOW - 300),
                               "bad": device("ETHOSCOPE_002", ["completed", "error", "error"], NOW - 900),
                               "old": device("ETHOSCOPE_003", ["completed"], NOW - 2 * DAY)})
    found = conditions(history)
    assert found["device:ok"].problem == ""
    bad = found["device:bad"]
    assert (bad.problem, bad.passes, bad.since, bad.detail) == (FAILED, 2, NOW - 600, "connection timed out")
    assert found["device:old"].problem == STALE and found["device:old"].since == NOW - 2 * DAY


def test_failures_threshold_and_a_device_that_never_succeeded():
    history = History(devices={"bad": device("ETHOSCOPE_002", ["completed", "error"], NOW - 600),
                               "new": device("ETHOSCOPE_004", ["error"], 0.0)})
    assert conditions(history, failures=2)["device:bad"].problem == ""
    assert conditions(history, failures=1)["device:bad"].problem == FAILED
    assert conditions(history, failures=2)["device:new"].problem == STALE     # never backed up at all


def test_a_device_no_longer_discovered_is_stale_and_says_so():
    history = History(devices={"gone": device("ETHOSCOPE_005", ["completed"], NOW - 3 * DAY, error="")})
    status = Status(run=Pass(pid=1, ended=NOW), devices={})
    gone = conditions(history, status)["device:gone"]
    assert gone.problem == STALE and gone.found is False
    assert "not found in the last pass" in render_alert.describe(Change(gone, False, STALE, gone.since), NOW)


def test_error_detail_is_one_bounded_line():
    history = History(devices={"bad": device("ETHOSCOPE_002", ["error"], NOW - 600,
                                             error="line 1\nline 2\t" + "x" * 900)})
    detail = conditions(history)["device:bad"].detail
    assert "\n" not in detail and len(detail) == 300 and detail.startswith("line 1 line 2 x")


def test_disk_conditions_one_per_file_system():
    usage = {"results": Usage(10, 100, 5, 0, 1, 20.0 * 86400), "videos": Usage(10, 100, 5, 0, 1, 20.0 * 86400)}
    history = History(disk=[DiskSample(NOW, usage)])
    (shared,) = alerts.disk_conditions(history, 14.0)
    assert (shared.subject, shared.problem, shared.name) == ("disk:results+videos", FILLING, "results and videos")
    apart = dict(usage, videos=Usage(10, 100, 5, 0, 2, None))
    found = {c.subject: c.problem for c in alerts.disk_conditions(History(disk=[DiskSample(NOW, apart)]), 14.0)}
    assert found == {"disk:results": FILLING, "disk:videos": ""}
    assert alerts.disk_conditions(History(), 14.0) == []


@pytest.mark.parametrize("monitor,outcome,problem", [
    ({}, "success", ""),
    ({}, "discovery failed", PASS_FAILED),
    ({"MONITOR_SERVICE_RESULT": "success"}, "success", ""),
    ({"MONITOR_SERVICE_RESULT": "exit-code", "MONITOR_EXIT_STATUS": "1"}, "failed", ""),       # devices
    ({"MONITOR_SERVICE_RESULT": "exit-code", "MONITOR_EXIT_STATUS": "2"}, "", PASS_FAILED),   # bad config
    ({"MONITOR_SERVICE_RESULT": "timeout"}, "running", PASS_FAILED),
    ({"MONITOR_SERVICE_RESULT": "oom-kill"}, "running", PASS_FAILED),
    ({"MONITOR_SERVICE_RESULT": "signal", "MONITOR_EXIT_STATUS": "TERM"}, "interrupted", None),  # stopped
    ({"MONITOR_SERVICE_RESULT": "signal", "MONITOR_EXIT_STATUS": "KILL"}, "running", PASS_FAILED),
])
def test_pass_condition(monitor, outcome, problem):
    status = Status(run=Pass(pid=1, started=NOW - 60, ended=NOW, outcome=outcome, message="no server"))
    assert alerts.pass_condition(status, monitor, NOW).problem == problem


def test_pass_condition_words():
    status = Status(run=Pass(pid=1, outcome="failed"))
    found = alerts.pass_condition(status, {"MONITOR_SERVICE_RESULT": "exit-code", "MONITOR_EXIT_STATUS": "2"}, NOW)
    assert found.detail == "configuration or usage error" and found.since == NOW


# ---------------------------------------------------------------- transitions

def cond(subject, problem, since=NOW):
    return Condition(subject, problem, subject.split(":")[-1], since)


def test_transitions_only_on_change():
    state = {}
    changes, state = alerts.transitions(state, [cond("device:a", FAILED, 10.0), cond("device:b", "")])
    assert [(c.condition.subject, c.recovered, c.problem, c.since) for c in changes] == [
        ("device:a", False, FAILED, 10.0)]
    assert state == {"device:a": [FAILED, 10.0]}
    for _ in range(3):                                   # more failed passes: nothing new
        changes, state = alerts.transitions(state, [cond("device:a", FAILED, 99.0), cond("device:b", "")])
        assert changes == [] and state == {"device:a": [FAILED, 10.0]}
    changes, state = alerts.transitions(state, [cond("device:a", STALE), cond("device:b", "")])
    assert changes == [] and state == {"device:a": [FAILED, 10.0]}        # failed -> stale: still one problem
    changes, state = alerts.transitions(state, [cond("device:a", ""), cond("device:b", "")])
    assert [(c.condition.subject, c.recovered, c.problem, c.since) for c in changes] == [
        ("device:a", True, FAILED, 10.0)]
    assert state == {}


def test_unknown_keeps_the_record_and_a_vanished_subject_is_dropped_quietly():
    state = {"pass": [PASS_FAILED, 5.0], "device:gone": [STALE, 1.0]}
    changes, state = alerts.transitions(state, [cond("pass", None)])
    assert changes == [] and state == {"pass": [PASS_FAILED, 5.0]}
    changes, state = alerts.transitions({}, [cond("pass", None)])
    assert changes == [] and state == {}


def test_state_file_is_read_tolerantly():
    good = recorded.state_document({"device:a": [FAILED, 5.0]}, NOW)
    assert recorded.read_state(json.loads(json.dumps(good))) == {"device:a": [FAILED, 5.0]}
    junk = {"subjects": {"a": "x", "b": [1, 2], "c": ["", 3], "d": [FAILED, "soon"], "e": [FAILED, 1, 2]}}
    assert recorded.read_state(junk) == {"d": [FAILED, 0]}
    assert recorded.read_state(None) == {} and recorded.read_state([1]) == {}


def test_undelivered_messages_round_trip_expire_and_follow_the_configured_channels():
    kept = [recorded.Undelivered("mail", "PROBLEM: ETHOSCOPE_004", "text", {"event": "alert"}, NOW - DAY),
            recorded.Undelivered("webhook", "PROBLEM: ETHOSCOPE_004", "text", {"event": "alert"}, NOW - DAY)]
    old = recorded.Undelivered("webhook", "PROBLEM: ETHOSCOPE_002", "t", {}, NOW - recorded.RETRY_FOR - 1)
    doc = json.loads(json.dumps(recorded.state_document({}, NOW, kept + [old])))
    assert recorded.read_undelivered(doc, ("mail", "webhook"), NOW) == (kept, [old])
    assert recorded.read_undelivered(doc, ("webhook",), NOW) == (kept[1:], [old])     # mail no longer set up
    junk = {"undelivered": [1, "x", {"channel": "mail"}, {"channel": "mail", "subject": "s", "since": "soon"},
                            {"channel": "sms", "subject": "s", "since": NOW}]}
    assert recorded.read_undelivered(junk, ("mail", "webhook"), NOW) == ([], [])
    assert recorded.read_undelivered(None, ("mail",), NOW) == ([], [])


def test_at_most_max_undelivered_are_kept_the_oldest_given_up():
    many = [recorded.Undelivered("mail", f"s{i}", "t", {}, NOW + i) for i in range(recorded.MAX_UNDELIVERED + 3)]
    kept, dropped = recorded.bounded(many)
    assert kept == many[3:] and dropped == many[:3]
    assert recorded.bounded(many[:2]) == (many[:2], [])


# ---------------------------------------------------------------- the words

def failing(name="ETHOSCOPE_004", detail="ssh: connect to host 169.254.9.4 port 22: Connection timed out"):
    c = Condition("device:" + A, FAILED, name, NOW - 600, detail, A, NOW - DAY / 2, 2)
    return Change(c, False, FAILED, NOW - 600)


def test_message_names_devices_since_error_and_what_to_do():
    changes = [failing(), Change(Condition("device:" + B, "", "ETHOSCOPE_007", 0, "", B, NOW - 60), True, STALE,
                                 NOW - 2 * DAY)]
    subject = render_alert.subject_line(changes, "node1")
    assert subject == "ethoscope backup on node1: PROBLEM: ETHOSCOPE_004; recovered: ETHOSCOPE_007"
    text = render_alert.body(changes, "node1", NOW, "http://node1:8093/")
    assert "ETHOSCOPE_004 (%s): backup failing since " % A in text
    assert "last error: ssh: connect to host 169.254.9.4 port 22: Connection timed out" in text
    assert "what to do: check that ETHOSCOPE_004 is switched on" in text
    assert "ethoscope-backup check -e ETHOSCOPE_004" in text and "2 failed passes in a row" in text
    assert "ETHOSCOPE_007 (%s): backed up again" % B in text and "http://node1:8093/" in text


def test_many_problems_are_summed_up_in_the_subject():
    changes = [failing("ETHOSCOPE_%03d" % i) for i in range(1, 9)]
    assert render_alert.subject_line(changes, "n") == (
        "ethoscope backup on n: 8 PROBLEMS: ETHOSCOPE_001, ETHOSCOPE_002, ETHOSCOPE_003, ETHOSCOPE_004, "
        "ETHOSCOPE_005, ...")


def test_webhook_document_and_journal_entries():
    change = failing()
    doc = render_alert.document([change], "node1", NOW, "subject", "body")
    assert doc["text"] == "subject\n\nbody" and doc["title"] == "subject" and doc["message"] == "body"
    assert doc["event"] == "alert" and doc["changes"] == [{
        "subject": "device:" + A, "name": "ETHOSCOPE_004", "device_id": A, "problem": FAILED, "recovered": False,
        "since": NOW - 600, "detail": change.condition.detail}]
    (problem, message, fields), = render_alert.journal_entries([change], NOW)
    assert problem == FAILED and fields == {"DEVICE_ID": A, "DEVICE_NAME": "ETHOSCOPE_004"}
    assert message.startswith("ALERT ETHOSCOPE_004") and "\n" not in message
    disk = Change(Condition("disk:videos", FILLING, "videos", NOW), True, FILLING, NOW - DAY)
    (problem, message, fields), = render_alert.journal_entries([disk], NOW)
    assert (problem, fields) == ("", {}) and message.startswith("RECOVERED videos: no longer filling up")


def test_a_failed_verification_alerts_once_per_device_and_never_speaks_for_the_pass():
    from ethoscope_rsync.state.alerts import DAMAGED
    from ethoscope_rsync.state.history import Verification
    history = History(devices={A: device("ETHOSCOPE_004", ["completed"], NOW - 60)})
    history.devices[A].id = A
    checked = {A: Verification(at=NOW, files=10, damaged=[["videos/x.h264", "checksum mismatch"]], damaged_count=1),
               B: Verification(at=NOW, files=3)}
    found = {c.subject: c for c in alerts.damage_conditions(checked, history)}
    assert (found["damaged:" + A].problem, found["damaged:" + A].name, found["damaged:" + A].device_id) == \
        (DAMAGED, "ETHOSCOPE_004", A)
    assert found["damaged:" + A].detail == "1 damaged file(s), e.g. videos/x.h264: checksum mismatch"
    assert found["damaged:" + B].problem == "" and found["damaged:" + B].name == B
    verify_failed = {"MONITOR_UNIT": "ethoscope-backup-verify.service", "MONITOR_SERVICE_RESULT": "exit-code",
                     "MONITOR_EXIT_STATUS": "1"}
    assert alerts.pass_condition(Status(run=Pass(pid=1, outcome="success")), verify_failed, NOW).problem is None
    text = render_alert.describe(Change(found["damaged:" + A], False, DAMAGED, NOW), NOW)
    assert "damaged copies found by verify" in text and "VERIFY_RESULT=damaged" in text


def test_a_message_with_bytes_a_device_sent_that_are_not_utf8_can_still_be_sent():
    from ethoscope_rsync.alerts import channels as notify
    change = failing(detail="rsync: \udcff\udcfe: No such file")
    text = render_alert.body([change], "node", NOW, "http://node:8093/")
    mail = bytes(notify.mail_message(("lab@example.org",), "PROBLEM: \udcff", text))
    assert b"\\udcff" in mail and b"\xff" not in mail


# ---------------------------------------------------------------- the second copy

def _offsite(**fields):
    from ethoscope_rsync.state.offsite import OffsiteState
    return OffsiteState(**fields)


def _snapshot(age):
    from ethoscope_rsync.state.offsite import Snapshot
    return Snapshot("1234abcd", NOW - age, 1, 1, 1, 1.0)


def test_the_second_copy_failing_old_or_fine():
    from ethoscope_rsync.state.alerts import OFFSITE_FAILED, OFFSITE_OLD
    fine, = alerts.offsite_conditions(_offsite(outcome="ok", last=_snapshot(3600)), NOW, 2.0)
    assert (fine.subject, fine.problem, fine.last_success) == ("offsite", "", NOW - 3600)
    failing, = alerts.offsite_conditions(_offsite(outcome="failed", problem="wrong password", message="Fatal: wrong "
                                                  "password or no key found", failures=3, since=NOW - 7200,
                                                  last=_snapshot(DAY)), NOW, 2.0)
    assert (failing.problem, failing.since, failing.passes) == (OFFSITE_FAILED, NOW - 7200, 3)
    assert failing.detail == "wrong password: Fatal: wrong password or no key found"
    old, = alerts.offsite_conditions(_offsite(outcome="interrupted", last=_snapshot(3 * DAY)), NOW, 2.0)
    assert (old.problem, old.since) == (OFFSITE_OLD, NOW - 3 * DAY)
    never, = alerts.offsite_conditions(_offsite(), NOW, 2.0)           # configured, never run: the timer is off?
    assert never.problem == OFFSITE_OLD and "ethoscope-backup-offsite.timer" in never.detail
    first, = alerts.offsite_conditions(_offsite(outcome="running"), NOW, 2.0)
    assert first.problem is None                                         # the first upload is on its way
    quiet, = alerts.offsite_conditions(_offsite(outcome="ok", last=_snapshot(30 * DAY)), NOW, 0)
    assert quiet.problem == ""


def test_damage_in_the_repository_is_its_own_subject():
    from ethoscope_rsync.state.alerts import OFFSITE_DAMAGED
    from ethoscope_rsync.state.offsite import Check
    state = _offsite(outcome="ok", last=_snapshot(60), check=Check(NOW - 60, "4/12", False, "repository damaged: x"))
    _, check = alerts.offsite_conditions(state, NOW, 2.0)
    assert (check.subject, check.problem, check.detail) == ("offsite:check", OFFSITE_DAMAGED, "repository damaged: x")


def test_the_second_copy_is_one_message_when_it_fails_and_one_when_it_is_sent_again():
    from ethoscope_rsync.state.alerts import OFFSITE_FAILED
    failing = alerts.offsite_conditions(_offsite(outcome="failed", problem="repository full", message="no space left",
                                                 since=NOW - 600, failures=1, last=_snapshot(DAY)), NOW, 2.0)
    changes, state = alerts.transitions({}, failing)
    assert [c.problem for c in changes] == [OFFSITE_FAILED]
    text = render_alert.describe(changes[0], NOW)
    assert text.startswith("second copy: sending it fails since ") and "repository full: no space left" in text
    assert "journalctl -u ethoscope-backup-offsite.service" in text and "newest snapshot: " in text
    assert alerts.transitions(state, failing)[0] == []                 # still failing: nothing new
    sent = alerts.offsite_conditions(_offsite(outcome="ok", last=_snapshot(60)), NOW, 2.0)
    (recovered,), _ = alerts.transitions(state, sent)
    assert recovered.recovered and render_alert.describe(recovered, NOW).startswith("second copy: sent again, newest")


def test_the_second_copy_is_a_subject_only_when_configured(tmp_path):
    from ethoscope_rsync.config.load import load_config
    from ethoscope_rsync.state.history import History
    from ethoscope_rsync.state.model import Status
    conf = tmp_path / "backup.conf"
    conf.write_text(f"[paths]\nstate_dir = {tmp_path}\nupstream_config = {tmp_path}/none\n")
    subjects = {c.subject for c in alerts.conditions(load_config(conf), History(), Status(), {}, NOW)}
    assert "offsite" not in subjects
    conf.write_text(conf.read_text() + "[offsite]\nrepository = /srv/r\n")
    subjects = {c.subject for c in alerts.conditions(load_config(conf), History(), Status(), {}, NOW)}
    assert "offsite" in subjects
