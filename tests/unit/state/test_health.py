"""The verdict: each device judged from documents the real store wrote, problems first, the node overdue
by its own clock (timer, daemon or by hand alike), and nothing to judge said as unknown."""
import math

from tests.fixtures.status import B, NOW, add_history_device, build, example_pass, scripted_pass
from ethoscope_rsync.render import verdict
from ethoscope_rsync.state import health
from ethoscope_rsync.state.views import view

DAY = 86400.0
ENDED = NOW - 3600          # example_pass ended an hour before NOW (its last device at NOW - 3600 - 560)


def judged(status, history, now=NOW, overdue_after=0.0, paused=None):
    return health.judge(view(status, history, now, DAY, files=False), now, overdue_after, paused)


def test_failing_device_first_with_since_and_reason():
    v = judged(*build(example_pass()))
    assert v.level == health.PROBLEM and [d.judgement for d in v.devices] == [health.FAILING, health.SAFE]
    failing = v.devices[0]
    assert failing.key == B and "connection lost" in failing.reason and failing.since > 0
    line = verdict.line(v, NOW)
    assert line.startswith("1/2 safe \u2014 ETHOSCOPE_002 failing since ") and "connection lost" in line


def test_all_safe_is_ok_and_says_when_the_last_pass_ended():
    status, history = build(scripted_pass(3, failing=0, now=NOW - 600))
    v = judged(status, history, overdue_after=1800)
    assert v.level == health.OK and v.safe == 3 and not v.problems
    assert verdict.line(v, NOW).startswith("3/3 safe \u2014 last pass ended ")
    assert verdict.title(v) == "\u2713 ethoscope backup: 3/3 safe"


def test_a_stale_device_is_a_problem_even_when_its_last_job_completed():
    status, history = build(example_pass())
    # not in the pass, last success long ago
    add_history_device(history, name="ETHOSCOPE_041", last_success=NOW - 3 * DAY)
    v = judged(status, history)
    stale = [d for d in v.devices if d.judgement == health.STALE]
    assert [d.name for d in stale] == ["ETHOSCOPE_041"] and v.devices[1] is stale[0]   # after the failing one
    assert "ETHOSCOPE_041 " in verdict.line(v, NOW) and verdict.count(v) == 2


def test_overdue_when_no_pass_ended_for_overdue_after():
    status, history = build(scripted_pass(2, failing=0, now=NOW - 74 * 60))
    quiet = judged(status, history, overdue_after=5 * 60)
    assert quiet.level == health.PROBLEM and quiet.overdue_for > 0
    assert "no pass has ended for " in verdict.line(quiet, NOW) and "(overdue)" in verdict.line(quiet, NOW)
    assert judged(status, history, overdue_after=0).level == health.OK          # 0: never overdue
    assert judged(status, history, overdue_after=2 * 3600).level == health.OK
    # the same rule without a status file (after a reboot, or passes by hand): the history's ends
    assert judged(None, history, overdue_after=5 * 60).level == health.PROBLEM


def test_a_running_pass_that_writes_nothing_is_overdue():
    status, history = build(example_pass(running=True), finish=False)
    generated = status["generated"]
    assert judged(status, history, now=generated + 60, overdue_after=1800).overdue_for == 0
    stuck = judged(status, history, now=generated + 7200, overdue_after=1800)
    assert stuck.level == health.PROBLEM and "has written nothing for" in verdict.line(stuck, generated + 7200)


def test_next_change_is_when_it_turns_overdue():
    status, history = build(scripted_pass(2, failing=0, now=NOW - 600))
    v = view(status, history, NOW, DAY, files=False)
    at = health.next_change(v, NOW, 1800)
    assert NOW < at < NOW + 1800
    assert health.judge(v, at - 1, 1800).level == health.OK and health.judge(v, at + 1, 1800).level == health.PROBLEM
    assert health.next_change(v, NOW, 0) == math.inf


def test_nothing_to_judge_is_unknown():
    v = judged(None, None, overdue_after=1800)
    assert v.level == health.UNKNOWN and verdict.line(v, NOW) == "unknown: no backup pass has run yet"


def test_a_failed_pass_no_device_explains_is_a_problem():
    status, history = build(scripted_pass(2, failing=0, now=NOW - 600))
    status["run"].update(outcome="failed", message="the node server did not answer")
    v = judged(status, history)
    assert v.level == health.PROBLEM and v.failed_pass == "the node server did not answer"
    assert "last pass failed: the node server did not answer" in verdict.line(v, NOW)


def test_paused_devices_are_neither_problems_nor_safe():
    status, history = build(example_pass())
    v = judged(status, history, paused={B: health.Pause("experiment over", NOW - 60)})
    assert v.level == health.OK and v.devices[-1].judgement == health.PAUSED
    assert verdict.line(v, NOW).startswith("1/1 safe, 1 paused")
    expired = judged(status, history, paused={B: health.Pause("x", NOW - 600, until=NOW - 1)})
    assert expired.level == health.PROBLEM


def test_many_problems_named_up_to_a_bound_and_hostile_text_is_one_line():
    status, history = build(scripted_pass(30, failing=1.0, now=NOW - 600))
    for key, device in status["devices"].items():
        device["error"] = "lost\x1b[2J\n<!channel> " + "x" * 500
    v = judged(status, history)
    line = verdict.line(v, NOW)
    assert len(v.problems) == 30 and "and 25 more" in line
    assert "\x1b" not in line and "\n" not in line and len(line) < 1200
