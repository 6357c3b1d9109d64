"""The words of an alert: what changed (:class:`ethoscope_rsync.state.alerts.Change`) as a mail subject
and body, a webhook's JSON document, and one journal entry per change. Pure functions.

Every message says which devices, since when, the last error in one line, and what to do.
"""
from __future__ import annotations

from ethoscope_rsync.state.alerts import (DAMAGED, FAILED, FILLING, OFFSITE_DAMAGED, OFFSITE_FAILED, OFFSITE_OLD,
                                          PASS_FAILED, STALE, Change)
from ethoscope_rsync.render.humanize import format_age, format_time

MAX_LISTED = 100          # changes written out in one message (a lab has at most about that many devices)

_WHAT_TO_DO = {
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
    return "backup pass failed" + (": " + c.detail if c.detail else "")


def describe(change: Change, now: float) -> str:
    """One change as a paragraph for people."""
    c = change.condition
    who = c.name + (" (%s)" % c.device_id if c.device_id and c.device_id != c.name else "")
    if change.recovered:
        if change.problem == FILLING:
            return "%s: no longer filling up (warned %s)." % (who, _when(change.since, now))
        if change.problem == PASS_FAILED:
            return "%s: passes run again (failed since %s)." % (who, _when(change.since, now))
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
    if c.detail and change.problem != PASS_FAILED:
        lines.append("  last error: " + c.detail)
    found = "" if c.found else " and it was not found in the last pass (switched off, offline, or not listed)"
    lines.append("  what to do: " + _WHAT_TO_DO[change.problem].format(name=c.name, found=found))
    return "\n".join(lines)


def subject_line(changes: list, node: str) -> str:
    bad = [c.condition.name for c in changes if not c.recovered]
    good = [c.condition.name for c in changes if c.recovered]
    parts = []
    if bad:
        parts.append("%s: %s" % ("PROBLEM" if len(bad) == 1 else "%d PROBLEMS" % len(bad), ", ".join(bad[:5])
                                 + (", ..." if len(bad) > 5 else "")))
    if good:
        parts.append("recovered: %s" % (", ".join(good[:5]) + (", ..." if len(good) > 5 else "")))
    return "ethoscope backup on %s: %s" % (node, "; ".join(parts))


def body(changes: list, node: str, now: float, status_url: str) -> str:
    listed = changes[:MAX_LISTED]
    paragraphs = [describe(change, now) for change in listed]
    if len(changes) > len(listed):
        paragraphs.append("... and %d more (see ethoscope-backup status)." % (len(changes) - len(listed)))
    paragraphs.append("Node %s, %s. You get one message when a problem begins and one when it ends; "
                      "the current state of every device: %s or ethoscope-backup status."
                      % (node, format_time(now), status_url))
    return "\n\n".join(paragraphs) + "\n"


def document(changes: list, node: str, now: float, subject: str, text: str) -> dict:
    """The webhook's JSON: 'text' for Slack/Mattermost/Matrix hookshot, 'title'/'message' for ntfy."""
    event = "recovery" if all(c.recovered for c in changes) else "alert"
    return {"text": subject + "\n\n" + text, "title": subject, "message": text, "event": event, "node": node,
            "time": now, "changes": [{"subject": c.condition.subject, "name": c.condition.name,
                                      "device_id": c.condition.device_id, "problem": c.problem,
                                      "recovered": c.recovered, "since": c.since,
                                      "detail": c.condition.detail} for c in changes[:MAX_LISTED]]}


def journal_entries(changes: list, now: float) -> list:
    """(problem or "" for a recovery, message, journal fields) per change."""
    entries = []
    for change in changes:
        c = change.condition
        fields = {"DEVICE_ID": c.device_id, "DEVICE_NAME": c.name} if c.device_id else {}
        message = ("RECOVERED " if change.recovered else "ALERT ") + describe(change, now).replace("\n  ", "; ")
        entries.append(("" if change.recovered else change.problem, message, fields))
    return entries
