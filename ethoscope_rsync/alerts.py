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
* each verified device's copies (``damaged:KEY``): damaged files found by its last ``verify`` —

and compares them with the conditions it recorded last time (``alerts.json`` in the state dir).
Only the differences are sent: a subject going from good to bad, or back. Comparing levels, not
counting events, means a run that was missed or failed loses nothing: the next one sees the same
difference. :func:`transitions` is that comparison, a pure function.

A message that a channel did not take (the mail server down, the webhook answering 500) is kept in
``alerts.json`` and tried again, on that channel only, by every later run for RETRY_FOR, oldest
first and marked delayed; at most MAX_UNDELIVERED are kept. A channel that fails in a run is not
tried again in that run, so a dead channel costs one ``[alert] timeout`` per run, not one per message.
"""
from __future__ import annotations

import dataclasses
import socket
import time

from ethoscope_rsync import forecast, notify
from ethoscope_rsync.exits import EXIT_FAILED, EXIT_OK, Busy
from ethoscope_rsync.logs import log
from ethoscope_rsync.model import ERROR, Status, is_stale, mapping, number, sequence
from ethoscope_rsync.history import History
from ethoscope_rsync.status import load_history, load_status, pass_lock, read_json, write_json_atomic

FAILED, STALE, FILLING, PASS_FAILED, DAMAGED = "failed", "stale", "filling", "pass failed", "damaged"
PASS_UNIT = "ethoscope-backup.service"
RETRY_FOR = 7 * 86400.0    # seconds an undelivered message is tried again (after every pass)
MAX_UNDELIVERED = 20       # undelivered messages kept; the oldest are given up first


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


def pass_condition(status: Status, monitor: dict, now: float) -> Condition:
    """The pass as a whole, from systemd's MONITOR_* variables (OnFailure=/OnSuccess=) and the status.
    Started by another unit (a failed verification), the alert knows nothing new of the pass."""
    if monitor.get("MONITOR_UNIT", PASS_UNIT) != PASS_UNIT:
        return Condition("pass", None, "backup pass")
    result, code = monitor.get("MONITOR_SERVICE_RESULT", ""), monitor.get("MONITOR_EXIT_STATUS", "")
    since = status.run.ended or status.run.started
    if status.run.outcome == "discovery failed":
        return Condition("pass", PASS_FAILED, "backup pass", since, _one_line("discovery failed: " + status.run.message))
    if not result:        # run by hand or by the daemon: the status is all there is to go by
        return Condition("pass", None if status.run.outcome in ("", "running", "interrupted") else "",
                         "backup pass")
    if result == "success" or (result == "exit-code" and code == "1"):     # 1: devices failed, said per device
        return Condition("pass", "", "backup pass")
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


@dataclasses.dataclass(frozen=True)
class Undelivered:
    """A message one channel did not take; `since` is its first attempt."""
    channel: str
    subject: str
    text: str
    document: dict
    since: float

    def as_json(self) -> dict:
        return dataclasses.asdict(self)


# ------------------------------------------------------------------ the state file

def read_state(data) -> dict:
    """alerts.json -> {subject: [problem, since]}; anything malformed is dropped."""
    out = {}
    for subject, value in mapping(mapping(data).get("subjects")).items():
        value = sequence(value)
        if len(value) == 2 and isinstance(value[0], str) and value[0]:
            out[str(subject)] = [value[0], number(value[1])]
    return out


def read_undelivered(data, channels: tuple, now: float) -> tuple:
    """alerts.json -> (messages to try again, messages given up: older than RETRY_FOR), oldest first.
    Malformed entries, and those of a channel no longer configured, are dropped."""
    keep, expired = [], []
    for entry in sequence(mapping(data).get("undelivered")):
        entry = mapping(entry)
        message = Undelivered(str(entry.get("channel", "")), str(entry.get("subject", "")),
                              str(entry.get("text", "")), mapping(entry.get("document")), number(entry.get("since")))
        if message.channel in channels and message.subject and message.since > 0:
            (keep if now - message.since < RETRY_FOR else expired).append(message)
    return keep, expired


def bounded(messages: list) -> tuple:
    """(the newest MAX_UNDELIVERED of `messages`, the older ones given up)."""
    cut = max(0, len(messages) - MAX_UNDELIVERED)
    return messages[cut:], messages[:cut]


def state_document(state: dict, now: float, undelivered: list = ()) -> dict:
    return {"schema": 1, "updated": round(now, 3), "subjects": state,
            "undelivered": [message.as_json() for message in undelivered]}


def _give_up(messages: list, why: str) -> None:
    for message in messages:
        log.warning("alert given up (%s): %s by %s, first tried %s", why, message.subject, message.channel,
                    time.strftime("%Y-%m-%d %H:%M", time.localtime(message.since)))


def send_pending(config, pending: list) -> tuple:
    """Try every undelivered message again on its channel, oldest first, marked delayed; a channel
    that fails is not tried again in this run. Returns (still undelivered, channels that failed)."""
    still, dead = [], set()
    for message in pending:
        if message.channel not in dead:
            failed = notify.send(config, "(delayed) " + message.subject, message.text,
                                 dict(message.document, delayed_since=message.since), only=(message.channel,))
            if not failed:
                log.info("alert delivered late by %s: %s", message.channel, message.subject)
                continue
            dead.add(message.channel)
        still.append(message)
    return still, dead


# ------------------------------------------------------------------ the command

def conditions(config, history: History, status: Status, monitor: dict, now: float) -> list:
    """Every subject's condition now."""
    from ethoscope_rsync.verify import load_verifications
    return (device_conditions(history, status, now, config.stale_after, config.alert_failures)
            + disk_conditions(history, config.disk_horizon) + [pass_condition(status, monitor, now)]
            + damage_conditions(load_verifications(config.verify_file), history))


def run_alerts(config, monitor: dict, now: float, test: bool = False) -> int:
    """``ethoscope-backup alert``: send what changed since the last run (exit 0 even when a channel
    failed: that is a warning); with `test`, a test message through every channel (exit 1 if one failed)."""
    from ethoscope_rsync import render_alert      # it words this module's Changes
    node = socket.gethostname() or "this node"
    if test:
        change = Change(Condition("test", "", "test message"), True, "", now)
        subject = "ethoscope backup on %s: test message" % node
        text = "A test of the alert channels of %s, sent by ethoscope-backup alert --test.\n" % node
        notify.journal([("", subject, {})])
        document = dict(render_alert.document([change], node, now, subject, text), event="test")
        return EXIT_FAILED if notify.send(config, subject, text, document) else EXIT_OK
    try:
        with pass_lock(config.state_dir / "alerts.lock"):      # the pass's kind of flock, on a file of its own
            recorded = read_json(config.alerts_file)
            pending, expired = read_undelivered(recorded, notify.channels(config), now)
            _give_up(expired, "undelivered for %d days" % (RETRY_FOR // 86400))
            undelivered, dead = send_pending(config, pending)
            found = conditions(config, load_history(config.history_file), load_status(config.status_file),
                               monitor, now)
            changes, state = transitions(read_state(recorded), found)
            if changes:
                url = "http://%s:%s/" % (node, config.listen.rpartition(":")[2] or "8093")
                notify.journal(render_alert.journal_entries(changes, now))
                subject = render_alert.subject_line(changes, node)
                text = render_alert.body(changes, node, now, url)
                document = render_alert.document(changes, node, now, subject, text)
                live = tuple(c for c in notify.channels(config) if c not in dead)
                failed = set(notify.send(config, subject, text, document, only=live)) | dead
                undelivered += [Undelivered(channel, subject, text, document, now)
                                for channel in notify.channels(config) if channel in failed]
            undelivered, dropped = bounded(undelivered)
            _give_up(dropped, "more than %d undelivered" % MAX_UNDELIVERED)
            write_json_atomic(config.alerts_file, state_document(state, now, undelivered))
    except Busy:
        log.info("another alert run is in progress; it sends what changed")
        return EXIT_OK
    log.info("alert: %d change(s) sent; %d subject(s) in trouble", len(changes), sum(1 for c in found if c.problem))
    return EXIT_OK
