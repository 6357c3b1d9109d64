"""Alerts on change: one message when something goes wrong, one when it is right again.

``ethoscope-backup alert`` runs after every pass (``ethoscope-backup-alert.service``, started by
``OnFailure=`` and ``OnSuccess=`` of ``ethoscope-backup.service``; the daemon calls it itself). It
reads the history and the status the pass wrote, works out the *condition* of every subject —

* each device ever backed up (``device:KEY``): ``failed`` when its last ``[alert] failures`` passes
  failed, ``stale`` when its last success is older than ``[status] stale_after`` (also a device that
  is no longer discovered at all), else good;
* each destination file system (``disk:KINDS``): ``filling`` when full within ``[alert] disk_horizon``
  days at its recent growth;
* the pass itself (``pass``): failed as a whole (discovery failed, configuration error, killed,
  timed out);
* each verified device's copies (``damaged:KEY``): damaged files found by its last ``verify``;
* the second copy, when ``[offsite] repository`` is set (``offsite``): its last run failed, or its
  newest snapshot is older than ``[offsite] alert_after`` days; and its repository (``offsite:check``):
  damage found by ``verify``'s ``restic check`` —

and compares them with the conditions it recorded last time (``alerts.json`` in the state dir).
Only the differences are sent: a subject going from good to bad, or back. Comparing levels, not
counting events, means a run that was missed or failed loses nothing: the next one sees the same
difference. :func:`transitions` is that comparison, a pure function.
"""
from __future__ import annotations

from ethoscope_rsync.state import forecast, pauses
from ethoscope_rsync.state.alerts import (DAMAGED, FAILED, FILLING, OFFSITE_DAMAGED, OFFSITE_FAILED, OFFSITE_OLD,
                                          KEY_WAIT, PASS_FAILED, STALE, Condition, Change)
from ethoscope_rsync.state.history import History
from ethoscope_rsync.state.model import ERROR, Status, is_stale
from ethoscope_rsync.state.offsite import FAILED as RUN_FAILED, RUNNING, OffsiteState
from ethoscope_rsync.state.store import load_offsite, load_verifications

PASS_UNIT = "ethoscope-backup.service"


def _one_line(message: str, limit: int = 300) -> str:
    line = " ".join(str(message).split())
    return line if len(line) <= limit else line[:limit - 1] + "…"


def device_conditions(history: History, status: Status, now: float, stale_after: float,
                      failures: int, paused=frozenset()) -> list:
    """One condition per device; a paused one (its key or name in `paused`) is unknown: nothing said
    while paused, what was said before kept."""
    conditions = []
    for key, entry in history.devices.items():
        if key in paused or entry.name in paused:
            conditions.append(Condition(f"device:{key}", None, entry.name or key, device_id=entry.id or key))
            continue
        errors = 0
        for summary in reversed(entry.passes):
            if summary.outcome != ERROR:
                break
            errors += 1
        found = key in status.devices or status.run.pid == 0     # no pass since boot: unknown, not missing
        run = status.devices.get(key)
        problem, since, detail = "", 0.0, ""
        if errors >= failures and entry.last_outcome == ERROR:
            problem, since = FAILED, entry.passes[-errors].ended if errors else entry.last_error_time
            detail = (run.error if run else "") or entry.last_error
        elif is_stale(entry.last_success, now, stale_after):
            problem, since = STALE, entry.last_success
            detail = entry.last_error if not found or entry.last_outcome == ERROR else ""
        conditions.append(Condition(f"device:{key}", problem, entry.name or key, since, _one_line(detail),
                                    entry.id or key, entry.last_success, errors, found, entry.protected_up_to))
    return conditions


def disk_conditions(history: History, horizon_days: float) -> list:
    """One condition per destination file system (destinations sharing one are one subject)."""
    found = forecast.forecasts(history.disk)
    conditions, seen = [], set()
    for kind, f in found.items():
        kinds = tuple(sorted((kind,) + f.shared))
        if kinds in seen:
            continue
        seen.add(kinds)
        problem = FILLING if f.short(horizon_days) else ""
        conditions.append(Condition("disk:" + "+".join(kinds), problem, " and ".join(kinds),
                                    f.at if problem else 0.0))
    return conditions


_STOPPED = ("TERM", "INT", "15", "2")    # stopped on purpose (systemctl stop, shutdown): not a failure
# systemd's own exit statuses (a unit that failed before our code ran), in words (systemd.exec(5)).
SYSTEMD_EXITS = {
    "200": "systemd could not change to its working directory", "203": "systemd could not execute the program "
    "(is the package installed completely?)", "209": "systemd could not set up its output (journal)",
    "217": "systemd could not switch to the user ethoscope-backup (does it exist? systemd-sysusers)",
    "226": "systemd could not set up its sandbox (a ReadWritePaths= folder that does not exist?)",
    "228": "systemd could not apply its security settings (SELinux/AppArmor?)",
    "233": "systemd could not create its state or runtime folders (/var/lib/ethoscope-backup, /run/ethoscope-backup)",
    "243": "systemd could not load its credentials: the SSH key /etc/ethoscope/keys/id_rsa (LoadCredential=) is "
    "missing or unreadable",
}


def damage_conditions(verifications: dict, history: History) -> list:
    """One condition per device ever verified (key -> Verification, from verify.json)."""
    conditions = []
    for key, checked in verifications.items():
        entry = history.devices.get(key)
        detail = "%d damaged file(s), e.g. %s: %s" % ((checked.damaged_count,) + tuple(checked.damaged[0])) \
            if checked.damaged_count and checked.damaged else ""
        conditions.append(Condition(f"damaged:{key}", DAMAGED if checked.damaged_count else "",
                                    entry.name if entry and entry.name else key, checked.at, _one_line(detail),
                                    entry.id if entry and entry.id else key))
    return conditions


def offsite_conditions(state: OffsiteState, now: float, alert_after: float) -> list:
    """The second copy (when configured): failing (its last run failed), or old (no snapshot for
    `alert_after` days, 0: never; or none at all, and no run on its way); and its repository as the
    last check found it."""
    age = state.age(now)
    problem: str | None = ""
    since, detail = 0.0, ""
    if state.outcome == RUN_FAILED:
        problem, since = OFFSITE_FAILED, state.since or state.ended
        detail = f"{state.problem}: {state.message}" if state.problem else state.message
    elif state.outcome == RUNNING and state.last is None:
        problem = None                  # the first upload is on its way: nothing new to say
    elif alert_after and (age is None or age > alert_after * 86400.0):
        problem, since = OFFSITE_OLD, state.last.time if state.last else 0.0
        detail = state.message if state.outcome else "no run yet: is ethoscope-backup-offsite.timer enabled?"
    found = [Condition("offsite", problem, "second copy", since, _one_line(detail),
                       last_success=state.last.time if state.last else 0.0, passes=state.failures)]
    if state.check is not None:
        found.append(Condition("offsite:check", "" if state.check.ok else OFFSITE_DAMAGED, "second copy's repository",
                               state.check.at, _one_line(state.check.message)))
    return found


def pass_condition(status: Status, monitor: dict, now: float) -> Condition:
    """The pass as a whole, from systemd's MONITOR_* variables (OnFailure=/OnSuccess=) and the status.
    Started by another unit (a failed verification), the alert knows nothing new of the pass."""
    if monitor.get("MONITOR_UNIT", PASS_UNIT) != PASS_UNIT:
        return Condition("pass", None, "backup pass")
    result, code = monitor.get("MONITOR_SERVICE_RESULT", ""), monitor.get("MONITOR_EXIT_STATUS", "")
    since = status.run.ended or status.run.started
    if status.run.outcome == KEY_WAIT:               # backup/keywait.py: installed before the key
        return Condition("pass", KEY_WAIT, "backup pass", since, _one_line(status.run.message))
    if status.run.outcome == "discovery failed":
        return Condition("pass", PASS_FAILED, "backup pass", since,
                         _one_line("discovery failed: " + status.run.message))
    if not result:        # run by hand or by the daemon: the status is all there is to go by
        return Condition("pass", None if status.run.outcome in ("", "running", "interrupted") else "",
                         "backup pass")
    if result == "success" or (result == "exit-code" and code == "1"):     # 1: devices failed, said per device
        return Condition("pass", "", "backup pass")
    if result == "signal" and code in _STOPPED:
        return Condition("pass", None, "backup pass")
    detail = {"exit-code": "configuration or usage error" if code == "2"
              else SYSTEMD_EXITS.get(code, f"exited with status {code}"),
              "timeout": "did not finish within its time limit (TimeoutStartSec=)",
              "signal": f"killed by signal {code}", "core-dump": f"crashed (signal {code})",
              "oom-kill": "killed: out of memory"}.get(result, f"failed ({result} {code})".strip())
    return Condition("pass", PASS_FAILED, "backup pass", now, _one_line(detail))


def transitions(state: dict, conditions: list) -> tuple:
    """Compare `conditions` with `state` (subject -> [problem, since], bad subjects only).

    Returns (changes, new state). Good -> bad and bad -> good are changes; a bad subject staying bad
    (even if its problem turns from failed to stale) is not. An unknown condition (problem None)
    keeps what was recorded; a subject that no longer exists is dropped without a message.
    """
    changes, new = [], {}
    for c in conditions:
        was = state.get(c.subject)
        if c.problem is None:
            if was:
                new[c.subject] = was
        elif c.problem and was:
            new[c.subject] = was
        elif c.problem:
            changes.append(Change(c, False, c.problem, c.since))
            new[c.subject] = [c.problem, c.since]
        elif was:
            changes.append(Change(c, True, was[0], was[1]))
    return changes, new


def conditions(config, history: History, status: Status, monitor: dict, now: float, beat=None) -> list:
    """Every subject's condition now (`beat`: the heartbeat's conditions, :mod:`.heartbeat`, when
    not those of this host)."""
    from ethoscope_rsync.alerts import heartbeat
    beat = heartbeat.conditions(config, history, status, now) if beat is None else beat
    paused = pauses.keys(config.pauses_file, now)
    return beat + (device_conditions(history, status, now, config.status.stale_after, config.alert.failures, paused)
                   + disk_conditions(history, config.alert.disk_horizon) + [pass_condition(status, monitor, now)]
                   + damage_conditions(load_verifications(config.verify_file), history)
                   + (offsite_conditions(load_offsite(config.offsite_file), now, config.offsite.alert_after)
                      if config.offsite.repository is not None else []))
