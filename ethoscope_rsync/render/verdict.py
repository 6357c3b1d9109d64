"""The verdict's words (:mod:`ethoscope_rsync.state.health`): one line first on the page, first in
``ethoscope-backup status``, in ``GET /`` and in the tab's title. Pure.

"38/40 safe — ETHOSCOPE_009 failing since 17:46: connection lost; ETHOSCOPE_041 not seen for 3.0 d".
The line is plain text with every device's text made one harmless line (:func:`escape.terminal`);
a page escapes it again for HTML.
"""
from __future__ import annotations

import time

from ethoscope_rsync.render import escape
from ethoscope_rsync.render.humanize import format_age, format_time
from ethoscope_rsync.state import health, pauses
from ethoscope_rsync.state.health import FAILING, OK, PAUSED, STALE, UNKNOWN, Verdict
from ethoscope_rsync.state.views import last_backup_time, view
from ethoscope_rsync.system.exits import EXIT_FAILED, EXIT_OK, EXIT_UNKNOWN

NAMED = 5                 # problem devices named in the line; the rest are counted
REASON = 80               # characters of an error kept in the line
DAY = 86400.0


def when(moment: float, now: float) -> str:
    """``17:46`` within the last day, else ``2026-12-04 17:46``."""
    if moment <= 0:
        return "never"
    if 0 <= now - moment < DAY:
        return time.strftime("%H:%M", time.localtime(moment))
    return format_time(moment)[:16]


def device_words(d, now: float) -> str:
    name = escape.terminal(d.name or d.key, 64)
    if d.judgement == FAILING:
        return "%s failing since %s: %s" % (name, when(d.since, now), escape.terminal(d.reason, REASON))
    if d.judgement == STALE:
        if d.last_seen and (not d.since or d.last_seen > d.since + 1):
            return "%s no good copy for %s" % (name, format_age(now - d.since) if d.since else "ever")
        return "%s not seen for %s" % (name, format_age(now - d.last_seen)) if d.last_seen else "%s never copied" % name
    if d.judgement == PAUSED:
        return "%s paused%s" % (name, ": " + escape.terminal(d.reason, REASON) if d.reason else "")
    return "%s safe" % name


def overdue_words(v: Verdict, now: float) -> str:
    if v.running_since:
        return "the pass started at %s has written nothing for %s" % (
            when(v.running_since, now), format_age(v.overdue_for))
    return "no pass has ended for %s (overdue)" % format_age(now - v.last_pass_end)


def parts(v: Verdict, now: float) -> tuple:
    """The verdict's head ("38/40 safe, 1 paused") and its clauses, problems first."""
    if v.level == UNKNOWN:
        return "unknown", ["no backup pass has run yet"]
    head = "%d/%d safe" % (v.safe, v.watched) if v.devices else "no devices"
    if v.paused:
        head += ", %d paused" % v.paused
    clauses = []
    if v.overdue_for > 0:
        clauses.append(overdue_words(v, now))
    if v.failed_pass:
        clauses.append(escape.terminal(v.failed_pass, 200) if v.failed_pass.startswith("waiting for")
                       else "last pass failed: %s" % escape.terminal(v.failed_pass, REASON))
    problems = v.problems
    clauses += [device_words(d, now) for d in problems[:NAMED]]
    if len(problems) > NAMED:
        clauses.append("and %d more" % (len(problems) - NAMED))
    paused = [d for d in v.devices if d.judgement == PAUSED]
    clauses += [device_words(d, now) for d in paused[:NAMED]]
    if len(paused) > NAMED:
        clauses.append("and %d more paused" % (len(paused) - NAMED))
    if v.level == OK:
        clauses.append("running since %s" % when(v.running_since, now) if v.running_since else
                       "last pass ended %s" % when(v.last_pass_end, now))
    return head, clauses


def line(v: Verdict, now: float) -> str:
    """The verdict in one line."""
    head, clauses = parts(v, now)
    return "%s \u2014 %s" % (head, "; ".join(clauses)) if v.level != UNKNOWN else "unknown: " + clauses[0]


def judged(status, history, now: float, stale_after: float, overdue_after: float, v=None) -> Verdict:
    """The verdict on the two documents (or on their View `v`, already read); the pauses attached to
    the history (:func:`ethoscope_rsync.state.pauses.attach`) are the admin's."""
    v = v if v is not None else view(status, history, now, stale_after, files=False)
    return health.judge(v, now, overdue_after, pauses.active(pauses.of_history(history), v.devices, now))


def count(v: Verdict) -> int:
    """Problems counted for the tab title: devices failing or stale, plus one for an overdue or failed pass."""
    return len(v.problems) + (1 if v.overdue_for > 0 else 0) + (1 if v.failed_pass else 0)


def title(v: Verdict) -> str:
    """The page's title: the count first, so a tab among many shows it."""
    if v.level == UNKNOWN:
        return "? ethoscope backup: no pass yet"
    if v.level == OK:
        return "\u2713 ethoscope backup: %d/%d safe" % (v.safe, v.watched)
    n = count(v)
    return "(%d) ethoscope backup: %d problem%s" % (n, n, "" if n == 1 else "s")


def document(v: Verdict, now: float) -> dict:
    """The verdict for JSON readers (``GET /``, ``/status``)."""
    return {"level": v.level, "line": line(v, now), "safe": v.safe, "devices": v.watched, "paused": v.paused,
            "overdue": v.overdue_for > 0, "last_pass_end": format_time(v.last_pass_end),
            "problems": [{"id": d.key, "name": d.name, "problem": d.judgement, "since": format_time(d.since),
                          "reason": escape.terminal(d.reason, 200)} for d in v.problems],
            "paused_devices": [{"id": d.key, "name": d.name, "since": format_time(d.since),
                                "reason": escape.terminal(d.reason, 200)} for d in v.devices if d.judgement == PAUSED]}


def verdict_metrics(v: Verdict) -> str:
    """Prometheus text of the verdict, appended to /metrics: the problems, overdue, the paused devices."""
    def label(value) -> str:
        return escape.inert(value, 64).replace("\\", "\\\\").replace('"', '\\"')
    lines = ["# HELP ethoscope_backup_problems Problems of the verdict: devices failing or stale, "
             "an overdue or failed pass.",
             "# TYPE ethoscope_backup_problems gauge", "ethoscope_backup_problems %d" % count(v),
             "# HELP ethoscope_backup_overdue 1 when no pass has ended for [status] overdue_after "
             "(or the running one is silent).",
             "# TYPE ethoscope_backup_overdue gauge", "ethoscope_backup_overdue %d" % (1 if v.overdue_for > 0 else 0),
             "# HELP ethoscope_backup_device_paused 1 for a device the admin paused (ethoscope-backup pause).",
             "# TYPE ethoscope_backup_device_paused gauge"]
    lines += ['ethoscope_backup_device_paused{device_id="%s",device_name="%s"} %d'
              % (label(d.key), label(d.name), 1 if d.judgement == PAUSED else 0) for d in v.devices]
    return "\n".join(lines) + "\n"


def next_change(status, history, now: float, stale_after: float, overdue_after: float) -> float:
    """When the verdict turns overdue with the files unchanged (the ages it shows are a document's
    period, see :mod:`ethoscope_rsync.web.documents`)."""
    v = view(status, history, now, stale_after, files=False)
    ends = [p.pause.until for p in pauses.of_history(history).values() if p.pause.until > now]
    return min([health.next_change(v, now, overdue_after)] + ends)


def root_additions(status, history, now: float, stale_after: float, overdue_after: float, v=None) -> dict:
    """What ``GET /`` adds to the upstream ``{"status", "last_backup"}``: the last pass's outcome
    (``status`` says only running or idle) and the verdict."""
    v = v if v is not None else view(status, history, now, stale_after, files=False)
    last = v.status.run.outcome if v.has_status else ""
    return {"last_pass": last, "verdict": document(judged(status, history, now, stale_after, overdue_after, v), now)}


def root_document(status, history, now: float, stale_after: float, overdue_after: float) -> dict:
    """``GET /``: the upstream keys (as :func:`ethoscope_rsync.render.upstream.root_document` has them)
    and the additions, from one reading of the documents without their file lists."""
    v = view(status, history, now, stale_after, files=False)
    return dict({"status": "running" if v.status.run.active else "idle",
                 "last_backup": format_time(last_backup_time(v))},
                **root_additions(status, history, now, stale_after, overdue_after, v))


def exit_code(v: Verdict) -> int:
    """``ethoscope-backup status``'s exit code, for Nagios/Icinga-style checks: 0 every device safe
    (or paused) and passes on time, 1 a device failing or stale, a failed pass or overdue, 3 unknown."""
    return {OK: EXIT_OK, UNKNOWN: EXIT_UNKNOWN}.get(v.level, EXIT_FAILED)
