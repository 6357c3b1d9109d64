"""``ethoscope-backup status`` for a terminal: the last pass, a table of the devices, the data age, then
each destination with its forecast, damage found by verify and the second copy. Pure functions, no I/O;
the same view of the status and the history as the web service's (:mod:`ethoscope_rsync.render.upstream`).
"""
from __future__ import annotations

import time

from ethoscope_rsync.render import dataage, offsite
from ethoscope_rsync.render.humanize import format_age, format_time, human_size
from ethoscope_rsync.render.upstream import disk_document
from ethoscope_rsync.state import pauses
from ethoscope_rsync.state.model import ERROR, RUNNING
from ethoscope_rsync.state.views import View, view
from ethoscope_rsync.system.logs import printable


def status_rows(status, history, now: float, stale_after: float, v: View | None = None) -> list:
    """Table rows (device, state, last success, age, lag, bytes, ssh cipher, message), from the same view
    of the status and the history as the web service's /status (`v`: that view, already read)."""
    rows = []
    devices = (v or view(status, history, now, stale_after, files=False)).devices
    paused = pauses.active(pauses.of_history(history), devices, now)     # the admin's, attached to the history
    for d in devices.values():
        state = f"running {d.percent:.0f}%" if d.state == RUNNING else "paused" if d.key in paused else d.state
        success = d.past.last_success
        error = (d.run.error if d.run else "") or d.past.last_error
        rows.append((printable(d.name or d.key), state + (" (stale)" if d.stale and d.key not in paused else ""),
                     time.strftime("%Y-%m-%d %H:%M", time.localtime(success)) if success else "never",
                     format_age(now - success) if success else "-",
                     dataage.cell(d.past, now), human_size(d.bytes_copied),
                     printable(d.cipher.removesuffix("@openssh.com")) or "-",
                     printable(error) if d.state == ERROR else ""))
    return sorted(rows)


def terminal_status(status, history, now: float, stale_after: float, horizon_days: float) -> list:
    """``ethoscope-backup status``: the last pass, a table of the devices, then the notes."""
    v = view(status, history, now, stale_after, files=False)
    if v.has_status:
        lines = [f"last pass: {v.status.run.outcome or '?'} — {printable(v.status.run.message)}"]
    elif not v.devices:
        return ["no backup pass has run yet"]
    else:
        lines = []
    rows = [("DEVICE", "STATE", "LAST SUCCESS", "AGE", "LAG", "COPIED", "CIPHER", "ERROR")]
    rows += status_rows(status, history, now, stale_after, v)
    widths = [max(len(str(row[i])) for row in rows) for i in range(7)]
    lines += ["  ".join(str(value).ljust(widths[i]) for i, value in enumerate(row[:7])) + "  " + row[7]
              for row in rows]
    lines += dataage.terminal_lines(v, now)
    notes = terminal_notes(status, history, now, stale_after, horizon_days, v)
    return lines + ([""] + notes if notes else [])


def terminal_notes(status, history, now: float, stale_after: float, horizon_days: float,
                   v: View | None = None) -> list:
    """Lines under ``ethoscope-backup status``'s table: each destination with its forecast, and
    the devices whose last verification found damage (`v`: the view, already read)."""
    v = v or view(status, history, now, stale_after, files=False)
    lines = []
    for kind, d in disk_document(v, horizon_days)["destinations"].items():
        growth = ("growing %s, full in %s" % (d["growth_human"], d["full_in"]) if d["full_in"]
                  else "growing %s" % d["growth_human"] if d["growth_human"] else "growth not known yet")
        lines.append("%-8s %s: %s used by backups (raw database mirror %s), %s free of %s; %s%s" % (
            kind, d["path"], d["used_human"], human_size(d["raw_mirror_bytes"]), d["free_human"], d["total_human"],
            growth, "  WARNING: under [alert] disk_horizon" if d["warning"] else ""))
    for key, d in v.devices.items():
        checked = v.history.verification.get(key)
        if checked and checked.damaged_count:
            lines.append("%s: %d damaged file(s) found by verify on %s, e.g. %s" % (
                d.name or key, checked.damaged_count, format_time(checked.at),
                printable(checked.damaged[0][0], 200) if checked.damaged else "?"))
    return lines + ([offsite.line(v.history.offsite, now)] if v.history.offsite else [])
