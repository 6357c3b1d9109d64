"""The second copy (:class:`ethoscope_rsync.state.offsite.OffsiteState`) for the status document, the
page, Prometheus and the terminal. Pure; every function takes the state (None: no second copy
configured or ever run, and nothing is shown) and ``now``.

Its lag is the age of the newest snapshot: how far the second copy is behind the node.
"""
from __future__ import annotations

import html

from ethoscope_rsync.render.humanize import format_age, format_time, human_size
from ethoscope_rsync.state.offsite import OK, RUNNING, OffsiteState
from ethoscope_rsync.system.logs import printable


RUNNING_RECHECK = 5.0      # seconds: a run in progress may have been killed (shown interrupted once seen)


def changes(state: OffsiteState | None, now: float) -> list:
    """When the renderings of `state` change by themselves: it turns old; a run's process may go."""
    if state is None:
        return []
    flips = [now + RUNNING_RECHECK] if state.outcome == RUNNING else []
    if state.last and state.alert_after and state.last.time + state.alert_after * 86400.0 >= now:
        flips.append(state.last.time + state.alert_after * 86400.0)
    return flips


def document(state: OffsiteState | None, now: float) -> dict | None:
    """``/status``'s ``offsite``: the newest snapshot, its lag and size, the last run and check."""
    if state is None:
        return None
    last, age = state.last, state.age(now)
    return {"repository": state.repository, "result": state.outcome, "problem": state.problem,
            "message": state.message, "started": state.started, "ended": state.ended,
            "failures": state.failures, "failing_since": state.since,
            "snapshot": None if last is None else {
                "id": last.id, "time": format_time(last.time), "timestamp": last.time, "files": last.files,
                "bytes": last.bytes, "size_human": human_size(last.bytes), "added_bytes": last.added,
                "seconds": last.seconds},
            "lag_seconds": None if age is None else round(age, 1), "lag_human": "" if age is None else format_age(age),
            "old": state.old(now), "alert_after_days": state.alert_after,
            "repository_bytes": state.repository_bytes, "repository_human": human_size(state.repository_bytes),
            "held_back": state.held_back, "held_back_examples": list(state.held_examples),
            "check": None if state.check is None else {
                "time": format_time(state.check.at), "timestamp": state.check.at, "share": state.check.share,
                "ok": state.check.ok, "message": state.check.message}}


def line(state: OffsiteState | None, now: float) -> str:
    """One line for people (``ethoscope-backup status``, the page)."""
    if state is None:
        return ""
    last, age = state.last, state.age(now)
    newest = (f"newest snapshot {last.id} {format_time(last.time)} ({format_age(age)} ago), "
              f"{human_size(last.bytes)}" if last else "no snapshot yet")
    if state.outcome == RUNNING:
        run = "a run in progress"
    elif state.outcome == OK:
        run = "last run ok"
    elif state.outcome:
        run = f"last run {state.outcome}: {state.problem + ': ' if state.problem else ''}{state.message}"
    else:
        run = "never run"
    parts = [f"second copy {state.repository}: {newest}; {run}"]
    if state.repository_bytes:
        parts.append(f"repository {human_size(state.repository_bytes)}")
    if state.held_back:
        parts.append(f"{state.held_back} database(s) held back (never verified)")
    if state.check is not None:
        parts.append(f"checked {format_time(state.check.at)}: " + ("sound" if state.check.ok else "DAMAGED: "
                                                                   + state.check.message))
    warning = "  WARNING: older than [offsite] alert_after" if state.old(now) else ""
    return printable("; ".join(parts), 600) + warning


def page(state: OffsiteState | None, now: float) -> str:
    """The page's block (after the destinations)."""
    if state is None:
        return ""
    bad = state.outcome not in ("", OK, RUNNING) or state.old(now) or (state.check and not state.check.ok)
    return '<h2>Second copy</h2><p class="dest %s" id="offsite">%s</p>' % (
        "warn" if bad else "", html.escape(line(state, now), quote=True))


def metrics(metric, state: OffsiteState | None, now: float) -> None:
    """The second copy's samples, through render.upstream's ``metric(name, type, help, samples)``."""
    if state is None:
        return
    last, age = state.last, state.age(now)        # age: None exactly when there is no snapshot
    metric("ethoscope_backup_offsite_last_snapshot_timestamp_seconds", "gauge",
           "Time of the second copy's newest snapshot (0 if none).", [((), last.time if last else 0)])
    metric("ethoscope_backup_offsite_lag_seconds", "gauge",
           "Age of the second copy's newest snapshot: how far it is behind the node (absent if none).",
           [((), round(age, 1))] if age is not None else [])
    metric("ethoscope_backup_offsite_snapshot_bytes", "gauge", "Bytes the newest snapshot holds.",
           [((), last.bytes if last else 0)])
    metric("ethoscope_backup_offsite_snapshot_added_bytes", "gauge", "Bytes the newest snapshot added.",
           [((), last.added if last else 0)])
    metric("ethoscope_backup_offsite_repository_bytes", "gauge",
           "Bytes the repository stores (deduplicated, compressed; 0 if not known).", [((), state.repository_bytes)])
    metric("ethoscope_backup_offsite_last_result", "gauge",
           "Result of the second copy's last run (the result label has value 1).",
           [((("result", state.outcome or "never"),), 1)])
    metric("ethoscope_backup_offsite_failures", "gauge", "Failed runs of the second copy in a row.",
           [((), state.failures)])
    metric("ethoscope_backup_offsite_held_back_databases", "gauge",
           "Databases not sent because their copy on this node was never verified.", [((), state.held_back)])
    metric("ethoscope_backup_offsite_old", "gauge",
           "1 if the newest snapshot is older than [offsite] alert_after.", [((), 1 if state.old(now) else 0)])
    if state.check is not None:
        metric("ethoscope_backup_offsite_check_ok", "gauge",
               "1 if the last restic check of the repository (by verify) found no damage.",
               [((), 1 if state.check.ok else 0)])
        metric("ethoscope_backup_offsite_check_timestamp_seconds", "gauge",
               "Time of the last restic check of the repository.", [((), state.check.at)])
