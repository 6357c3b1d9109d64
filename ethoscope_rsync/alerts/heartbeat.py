"""The heartbeat: conditions that do not need a pass to have run. Checked by every alert run, and by
``ethoscope-backup alert --heartbeat`` from ``ethoscope-backup-heartbeat.timer`` (every 10 minutes,
whatever the passes do), so that passes that stopped are reported too:

* subject ``passes``: **overdue** when no pass has ended for ``[status] overdue_after`` (the verdict's
  rule, :mod:`ethoscope_rsync.state.health`), **running too long** when one device's copy in the
  running pass started more than ``[alert] pass_limit`` ago or the pass has written nothing for
  ``overdue_after``. Under systemd only
  while one of the node's switches is on (switched off, no pass is expected); without systemd (the
  ``daemon``, passes by hand) always.
* subject ``timer``: **inactive** when a switch is on but ``ethoscope-backup.timer`` is not active
  (stopped by hand, its unit broken): no pass will start.
"""
from __future__ import annotations

import os

from ethoscope_rsync.config.switches import SWITCH_DIR, SWITCHES, switched_on
from ethoscope_rsync.render.humanize import format_age, format_time
from ethoscope_rsync.render.verdict import overdue_words
from ethoscope_rsync.state import health
from ethoscope_rsync.state.alerts import LONG_PASS, OVERDUE, TIMER_OFF, Condition
from ethoscope_rsync.state.model import RUNNING
from ethoscope_rsync.state.views import DeviceView, View
from ethoscope_rsync.system import execute

TIMER = "ethoscope-backup.timer"
SYSTEMD_RUNNING = "/run/systemd/system"       # exists when systemd is PID 1 (sd_booted)


def _view(history, status) -> View:
    devices = {key: DeviceView(key, None, entry, False) for key, entry in history.devices.items()}
    return View(status, history, devices, status.run.pid != 0)


def pass_condition(history, status, now: float, overdue_after: float, pass_limit: float) -> Condition:
    """The passes: overdue, running too long, fine, or unknown (None: no pass ever ended)."""
    v = _view(history, status)
    verdict = health.judge(v, now, overdue_after)
    if verdict.running_since:
        # A scheduled pass may run for days (each device copied again while others copy): what may not
        # is one device's copy, judged from the oldest still running.
        since, name = min(((d.started, d.name) for d in status.devices.values() if d.state == RUNNING and d.started),
                          default=(now, ""))
        if pass_limit and now - since > pass_limit:
            return Condition("passes", LONG_PASS, "backup pass", verdict.running_since,
                             "copying %s since %s (%s), longer than [alert] pass_limit"
                             % (name, format_time(since), format_age(now - since)))
        if verdict.overdue_for > 0:
            return Condition("passes", LONG_PASS, "backup pass", verdict.running_since, overdue_words(verdict, now))
        return Condition("passes", "", "backup pass", last_success=verdict.last_pass_end)
    if not verdict.last_pass_end:
        return Condition("passes", None, "backup pass")
    if verdict.overdue_for > 0:
        return Condition("passes", OVERDUE, "backup pass", verdict.last_pass_end, overdue_words(verdict, now),
                         last_success=verdict.last_pass_end)
    return Condition("passes", "", "backup pass", last_success=verdict.last_pass_end)


def timer_state() -> str:
    """``systemctl is-active`` of the backup timer ("" when it cannot be asked)."""
    return _systemctl("is-active", TIMER)


def _systemctl(*args) -> str:
    try:
        result = execute.run(("systemctl", *args), timeout=10)
    except OSError:
        return ""
    return result.stdout.strip() if not result.timed_out else ""


def timer_condition(switches: tuple, state: str) -> Condition:
    if not switches or not state:
        return Condition("timer", None if not state else "", TIMER)
    if state == "active":
        return Condition("timer", "", TIMER)
    return Condition("timer", TIMER_OFF, TIMER, 0.0, "%s is %s while %s is on: no pass will start"
                     % (TIMER, state, ", ".join(switches)))


def conditions(config, history, status, now: float, systemd: bool | None = None, switches=None,
               timer=timer_state) -> list:
    """The heartbeat's conditions. `systemd`, `switches` and `timer` stand in for the host in tests."""
    systemd = os.path.isdir(SYSTEMD_RUNNING) if systemd is None else systemd
    switches = (switched_on(SWITCH_DIR) if switches is None else tuple(switches)) if systemd else ()
    if systemd and not switches:
        return [Condition("passes", "", "backup pass"), Condition("timer", "", TIMER)]   # switched off: none expected
    found = [pass_condition(history, status, now, config.status.overdue_after, config.alert.pass_limit)]
    if systemd:
        found.append(timer_condition(tuple(s for s in switches if s in SWITCHES), timer()))
    return found
