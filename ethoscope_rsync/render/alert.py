"""The words of an alert: what changed (:class:`ethoscope_rsync.state.alerts.Change`) as a mail subject
and body, a webhook's JSON document, and one journal entry per change. Pure functions.

Every message says which devices, since when, the last error in one line, and what to do.

A storm (a whole lab failing at once) makes one bounded message per channel: the first changes
described, the rest counted by problem with their first names (:func:`messages`), cut further until the
webhook's document fits its limit. Everything a device named itself or said is escaped for the medium
(:mod:`ethoscope_rsync.render.escape`): plain text for mail and the journal, chat markup for the
webhook's ``text``.
"""
from __future__ import annotations

import json
import re

from ethoscope_rsync.state.alerts import (DAMAGED, FAILED, FILLING, LONG_PASS, OFFSITE_DAMAGED, OFFSITE_FAILED,
                                          OFFSITE_OLD, OVERDUE, PASS_FAILED, STALE, TIMER_OFF, KEY_WAIT, Change)
from ethoscope_rsync.render import escape
from ethoscope_rsync.render.humanize import format_age, format_time

MAX_LISTED = 100          # changes written out in one message (a lab has at most about that many devices)
STORM_LISTED = 10         # changes described in a message made by messages(); the rest counted and named
NAMES_LISTED = 30         # names of the rest given, per problem
NAME, DETAIL = 64, 300    # characters of a device's name and of an error kept
_PLAIN = re.compile(r"[A-Za-z0-9_.-]{1,64}")

_WHAT_TO_DO = {
    OVERDUE: ("is the timer running (systemctl status ethoscope-backup.timer) and is a switch on "
              "(ethoscope-backup(8), SWITCHES)? the last passes: journalctl -u ethoscope-backup.service -n 50; "
              "without systemd: is ethoscope-backup daemon running?"),
    LONG_PASS: ("see what it is doing: ethoscope-backup status; journalctl -u ethoscope-backup.service -n 50; "
                "a stuck pass can be stopped: systemctl stop ethoscope-backup.service (the next one resumes)"),
    KEY_WAIT: ("put the node's SSH private key there (mode 600, owned by root) and its public key in "
               "~ethoscope/.ssh/authorized_keys on every device (README, the first hour); "
               "the next pass runs by itself"),
    TIMER_OFF: ("start it: systemctl start ethoscope-backup.timer (systemctl status ethoscope-backup.timer "
                "says why it stopped)"),
    FAILED: ("check that {name} is switched on and reachable from this node: ethoscope-backup check -e {name}; "
             "its story: journalctl -u ethoscope-backup.service DEVICE_NAME={name}"),
    STALE: ("{name} has not been backed up for a long time{found}; if it was retired, nothing to do, else "
            "switch it on or check the node's device list, then: ethoscope-backup check -e {name}"),
    FILLING: ("free space on that file system, move finished experiments elsewhere, or add a disk; "
              "figures: ethoscope-backup status"),
    PASS_FAILED: "see: journalctl -u ethoscope-backup.service -n 50; and run: ethoscope-backup check",
    DAMAGED: ("list them: journalctl -u ethoscope-backup-verify.service DEVICE_NAME={name} VERIFY_RESULT=damaged; "
              "delete a damaged copy on the node and the next pass copies it again if {name} still has it"),
    OFFSITE_FAILED: ("see: journalctl -u ethoscope-backup-offsite.service -n 30; test the repository: "
                     "ethoscope-backup check; send one now: systemctl start ethoscope-backup-offsite.service"),
    OFFSITE_OLD: ("the node's disk may be the only copy of recent experiments: systemctl status "
                  "ethoscope-backup-offsite.timer (enable it if it is off), then ethoscope-backup check"),
    OFFSITE_DAMAGED: ("see: journalctl -u ethoscope-backup-verify.service OFFSITE_CHECK=damaged; restic's own "
                      "repair (restic check, restic repair in newer restic) is described in man 8 "
                      "ethoscope-backup, RESTORE"),
}


def _when(moment: float, now: float) -> str:
    return "%s (%s ago)" % (format_time(moment), format_age(now - moment)) if moment > 0 else "never"


def _problem_words(change: Change) -> str:
    c = change.condition
    if change.problem == FAILED:
        return "backup failing since %s" % format_time(change.since) if change.since else "backup failing"
    if change.problem == STALE:
        return "no backup since %s" % (format_time(change.since) if change.since else "it was first seen")
    if change.problem == FILLING:
        return "destination filling up"
    if change.problem == DAMAGED:
        return "damaged copies found by verify on %s" % format_time(change.since)
    if change.problem == OFFSITE_FAILED:
        return "sending it fails since %s" % format_time(change.since) if change.since else "sending it fails"
    if change.problem == OFFSITE_OLD:
        return "newest snapshot from %s" % format_time(change.since) if change.since else "no snapshot yet"
    if change.problem == OFFSITE_DAMAGED:
        return "restic check found damage on %s" % format_time(change.since)
    if change.problem in (OVERDUE, LONG_PASS, TIMER_OFF, KEY_WAIT):
        return change.problem + (": " + c.detail if c.detail else "")
    return "backup pass failed" + (": " + c.detail if c.detail else "")


def describe(change: Change, now: float, esc=escape.mail) -> str:
    """One change as a paragraph for people, what a device sent escaped by `esc`."""
    c = change.condition
    name = _name(c, esc)                                        # a device's name is its own; the others ours
    device_id = c.device_id if _PLAIN.fullmatch(c.device_id) else esc(c.device_id, NAME)
    who = name + (" (%s)" % device_id if c.device_id and c.device_id != c.name else "")
    if change.recovered:
        if change.problem == FILLING:
            return "%s: no longer filling up (warned %s)." % (who, _when(change.since, now))
        if change.problem == PASS_FAILED:
            return "%s: passes run again (failed since %s)." % (who, _when(change.since, now))
        if change.problem in (OVERDUE, LONG_PASS, TIMER_OFF, KEY_WAIT):
            again = {OVERDUE: "passes end again", LONG_PASS: "the long pass has ended", TIMER_OFF: "active again",
                     KEY_WAIT: "the SSH key is in place, passes run"}
            return "%s: %s (%s since %s)." % (who, again[change.problem], change.problem, _when(change.since, now))
        if change.problem == DAMAGED:
            return "%s: the last verify found no damaged copy." % who
        if change.problem == OFFSITE_DAMAGED:
            return "%s: the last restic check found no damage." % who
        if change.problem in (OFFSITE_FAILED, OFFSITE_OLD):
            return "%s: sent again, newest snapshot %s (%s since %s)." % (
                who, _when(c.last_success, now), change.problem, format_time(change.since) or "first seen")
        return "%s: backed up again, last success %s (%s since %s)." % (
            who, _when(c.last_success, now), change.problem, format_time(change.since) or "first seen")
    lines = ["%s: %s." % (who, _problem_words(change))]
    if c.subject.startswith("device:"):
        lines.append("  last success: %s%s" % (_when(c.last_success, now),
                                               "; %d failed passes in a row" % c.passes if c.passes else ""))
        if change.problem == STALE:      # the data age: what a dead card would lose now
            lines.append("  its data is on the node only up to %s: anything it wrote since exists only on its card"
                         % _when(c.protected, now) if c.protected > 0 else
                         "  none of its data is known to be whole on the node yet")
    if c.subject == "offsite":
        lines.append("  newest snapshot: %s%s" % (_when(c.last_success, now),
                                                  "; %d failed runs in a row" % c.passes if c.passes else ""))
    if c.detail and change.problem not in (PASS_FAILED, OVERDUE, LONG_PASS, TIMER_OFF, KEY_WAIT):
        lines.append("  last error: " + esc(c.detail, DETAIL))
    found = "" if c.found else " and it was not found in the last pass (switched off, offline, or not listed)"
    lines.append("  what to do: " + _WHAT_TO_DO[change.problem].format(name=name, found=found))
    return "\n".join(lines)


def subject_line(changes: list, node: str, esc=escape.mail) -> str:
    bad = [_name(c.condition, esc) for c in changes if not c.recovered]
    good = [_name(c.condition, esc) for c in changes if c.recovered]
    parts = []
    if bad:
        parts.append("%s: %s" % ("PROBLEM" if len(bad) == 1 else "%d PROBLEMS" % len(bad), ", ".join(bad[:5])
                                 + (", ..." if len(bad) > 5 else "")))
    if good:
        parts.append("recovered: %s" % (", ".join(good[:5]) + (", ..." if len(good) > 5 else "")))
    return "ethoscope backup on %s: %s" % (node, "; ".join(parts))


def _name(condition, esc) -> str:
    """A subject's name for people: ours as it is, a device's as it is when it is a plain word
    (ETHOSCOPE_004: nothing any medium reads as markup, and a command can be copied), else escaped."""
    return condition.name if not condition.device_id or _PLAIN.fullmatch(condition.name) else esc(condition.name, NAME)


def _rest(changes: list, esc, names: int = NAMES_LISTED) -> str:
    """The changes not described: counted by problem (recoveries apart), with their first names."""
    groups: dict = {}
    for c in changes:
        groups.setdefault("recovered from " + c.problem if c.recovered else c.problem,
                          []).append(_name(c.condition, esc))
    parts = ["%d %s%s" % (len(found), problem, " (%s%s)" % (", ".join(found[:names]),
                                                            ", ..." if len(found) > names else "") if names else "")
             for problem, found in groups.items()]
    return "... and %d more: %s. See ethoscope-backup status." % (len(changes), "; ".join(parts))


def body(changes: list, node: str, now: float, status_url: str, esc=escape.mail, listed: int = MAX_LISTED,
         names: int = NAMES_LISTED) -> str:
    shown = changes[:listed]
    paragraphs = [describe(change, now, esc) for change in shown]
    if len(changes) > len(shown):
        paragraphs.append(_rest(changes[len(shown):], esc, names))
    paragraphs.append("Node %s, %s. You get one message when a problem begins and one when it ends; "
                      "the current state of every device: %s or ethoscope-backup status."
                      % (node, format_time(now), status_url))
    return "\n\n".join(paragraphs) + "\n"


def document(changes: list, node: str, now: float, subject: str, text: str, plain: tuple | None = None,
             listed: int = MAX_LISTED) -> dict:
    """The webhook's JSON: 'text' (`subject` and `text`, in chat markup) for Slack/Mattermost/Matrix
    hookshot, 'title'/'message' (`plain`: subject and text as plain text, else the same) for ntfy;
    'changes' the first `listed`, 'total' and 'counts' all of them."""
    event = "recovery" if all(c.recovered for c in changes) else "alert"
    title, message = plain or (subject, text)
    counts: dict = {}
    for c in changes:
        key = "recovered" if c.recovered else c.problem
        counts[key] = counts.get(key, 0) + 1
    return {"text": subject + "\n\n" + text, "title": title, "message": message, "event": event, "node": node,
            "time": now, "total": len(changes), "counts": counts,
            "changes": [{"subject": c.condition.subject, "name": escape.inert(c.condition.name, NAME),
                         "device_id": escape.inert(c.condition.device_id, NAME), "problem": c.problem,
                         "recovered": c.recovered, "since": c.since,
                         "detail": escape.inert(c.condition.detail, DETAIL)} for c in changes[:listed]]}


def messages(changes: list, node: str, now: float, status_url: str, limit: int) -> tuple:
    """(subject, text, document) of one alert, each bounded: mail's subject and plain text, and the
    webhook's document (chat markup in 'text') no larger than `limit` bytes as JSON, whatever the number
    of changes: fewer are described until it fits, the rest counted and named."""
    steps = [(n, NAMES_LISTED) for n in (STORM_LISTED, 5, 2, 1)] + [(0, n) for n in (NAMES_LISTED, 10, 3, 0)]
    for listed, names in steps:
        subject, text = subject_line(changes, node), body(changes, node, now, status_url, listed=listed, names=names)
        doc = document(changes, node, now, subject_line(changes, node, escape.chat),
                       body(changes, node, now, status_url, escape.chat, listed, names), (subject, text), listed)
        if len(json.dumps(doc, ensure_ascii=False).encode("utf-8", "backslashreplace")) <= limit:
            break
    return subject, text, doc


def journal_entries(changes: list, now: float) -> list:
    """(problem or "" for a recovery, message, journal fields) per change."""
    entries = []
    for change in changes:
        c = change.condition
        fields = {"DEVICE_ID": c.device_id, "DEVICE_NAME": c.name} if c.device_id else {}
        message = (("RECOVERED " if change.recovered else "ALERT ")
                   + describe(change, now, escape.terminal).replace("\n  ", "; "))
        entries.append(("" if change.recovered else change.problem, message, fields))
    return entries
