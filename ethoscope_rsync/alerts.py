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
  timed out) —

and compares them with the conditions it recorded last time (``alerts.json`` in the state dir).
Only the differences are sent: a subject going from good to bad, or back. Comparing levels, not
counting events, means a run that was missed or failed loses nothing: the next one sees the same
difference. :func:`transitions` is that comparison, a pure function.
"""
from __future__ import annotations

import contextlib
import dataclasses
import errno
import fcntl
import os

from ethoscope_rsync import forecast
from ethoscope_rsync.model import ERROR, History, Status, is_stale, mapping, number, sequence

FAILED, STALE, FILLING, PASS_FAILED = "failed", "stale", "filling", "pass failed"


@dataclasses.dataclass(frozen=True)
class Condition:
    """What is true of one subject now. `problem` is "" when all is well, None when unknown."""
    subject: str
    problem: str | None
    name: str                  # who, for people: ETHOSCOPE_004, "results", "backup pass"
    since: float = 0.0         # when the problem began (0: never succeeded / unknown)
    detail: str = ""           # the last error, one line
    device_id: str = ""
    last_success: float = 0.0
    passes: int = 0            # failed passes in a row (devices)
    found: bool = True         # devices: in the last pass at all


@dataclasses.dataclass(frozen=True)
class Change:
    """A subject went bad (`recovered` False) or is good again (`recovered` True)."""
    condition: Condition
    recovered: bool
    problem: str               # the problem that began, or the one that ended
    since: float               # when that problem began


# ------------------------------------------------------------------ conditions (pure)

def _one_line(message: str, limit: int = 300) -> str:
    line = " ".join(str(message).split())
    return line if len(line) <= limit else line[:limit - 1] + "…"


def device_conditions(history: History, status: Status, now: float, stale_after: float,
                      failures: int) -> list:
    conditions = []
    for key, entry in history.devices.items():
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
                                    entry.id or key, entry.last_success, errors, found))
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


def pass_condition(status: Status, monitor: dict, now: float) -> Condition:
    """The pass as a whole, from systemd's MONITOR_* variables (OnFailure=/OnSuccess=) and the status."""
    result, code = monitor.get("MONITOR_SERVICE_RESULT", ""), monitor.get("MONITOR_EXIT_STATUS", "")
    since = status.run.ended or status.run.started
    if status.run.outcome == "discovery failed":
        return Condition("pass", PASS_FAILED, "backup pass", since, _one_line("discovery failed: " + status.run.message))
    if result in ("", "success") or (result == "exit-code" and code == "1"):
        return Condition("pass", "" if result else None, "backup pass")
    if result == "signal" and code in _STOPPED:
        return Condition("pass", None, "backup pass")
    detail = {"exit-code": "configuration or usage error" if code == "2" else f"exited with status {code}",
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


# ------------------------------------------------------------------ the state file

def read_state(data) -> dict:
    """alerts.json -> {subject: [problem, since]}; anything malformed is dropped."""
    out = {}
    for subject, value in mapping(mapping(data).get("subjects")).items():
        value = sequence(value)
        if len(value) == 2 and isinstance(value[0], str) and value[0]:
            out[str(subject)] = [value[0], number(value[1])]
    return out


def state_document(state: dict, now: float) -> dict:
    return {"schema": 1, "updated": round(now, 3), "subjects": state}


@contextlib.contextmanager
def alert_lock(path):
    """Non-blocking flock: yields False when another alert run holds it (it will see the same changes)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o664)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as error:
            if error.errno not in (errno.EWOULDBLOCK, errno.EACCES):
                raise
            yield False
            return
        yield True
    finally:
        os.close(fd)
