"""The data age, for people and for Prometheus: per device the moment up to which its data is known to
be on the node ("protected up to") and the lag since then, and the lab's worst lag. Pure.

What a lab loses when a card dies is the device's data written since that moment; the stale alert
names it too (:mod:`ethoscope_rsync.render.alert`).
"""
from __future__ import annotations

import math

from ethoscope_rsync.render.humanize import format_age, format_time
from ethoscope_rsync.state.model import lag
from ethoscope_rsync.state.views import View, worst_lag
from ethoscope_rsync.system.logs import printable


def rounded(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds, 1)


def device_fields(past, now: float) -> dict:
    """A device's record in /status: ``protected_up_to`` (epoch, 0: never) and ``lag_seconds`` (None: never)."""
    return {"protected_up_to": past.protected_up_to, "lag_seconds": rounded(lag(past.protected_up_to, now))}


def document_fields(v: View, now: float) -> dict:
    """/status's top level: the worst lag and whose."""
    worst, name = worst_lag(v, now)
    return {"worst_lag_seconds": rounded(worst), "worst_lag_device": name}


def cell(past, now: float) -> str:
    """The LAG column of ``ethoscope-backup status``."""
    return format_age(lag(past.protected_up_to, now)) if past.protected_up_to else "-"


def terminal_lines(v: View, now: float) -> list:
    worst, name = worst_lag(v, now)
    if worst is None:
        return []
    return [f"worst lag: {format_age(worst)} ({printable(name)}): its data is on the node up to "
            f"{format_time(now - worst)}"]


def metrics(metric, v: View, now: float) -> None:
    """The data age's Prometheus samples, through render_metrics' `metric`."""
    def per(value):
        return [((("device_id", k), ("device_name", d.name)), value(d)) for k, d in v.devices.items()]

    def age(d):
        seconds = lag(d.past.protected_up_to, now)
        return math.inf if seconds is None else round(seconds, 1)

    metric("ethoscope_backup_device_protected_up_to_timestamp_seconds", "gauge",
           "Moment up to which the device's data is known to be on the node: the start of its last copy "
           "that took everything, its databases verified (0 if never).", per(lambda d: d.past.protected_up_to))
    metric("ethoscope_backup_device_lag_seconds", "gauge",
           "The device's data age: seconds since the moment up to which its data is on the node "
           "(+Inf if never copied whole).", per(age))
    worst = worst_lag(v, now)[0]
    metric("ethoscope_backup_worst_lag_seconds", "gauge",
           "The largest data age of the devices copied whole at least once (absent when none was).",
           [((), round(worst, 1))] if worst is not None else [])
