"""The destinations' Prometheus samples (their file systems at the end of the last pass, and the
forecast of when they are full), through :func:`ethoscope_rsync.render.upstream.render_metrics`' `metric`."""
from __future__ import annotations

from ethoscope_rsync.state.model import DAY


def metrics(metric, found: dict, paths: dict, horizon_days: float) -> None:
    def per(value, when=lambda f: True):
        return [((("destination", kind), ("path", paths.get(kind, ""))), value(f))
                for kind, f in found.items() if when(f)]

    metric("ethoscope_backup_destination_free_bytes", "gauge",
           "Free bytes of the destination's file system at the end of the last pass.", per(lambda f: f.free))
    metric("ethoscope_backup_destination_size_bytes", "gauge",
           "Size of the destination's file system.", per(lambda f: f.total))
    metric("ethoscope_backup_destination_used_bytes", "gauge",
           "Bytes of the backed-up copies in the destination (raw database mirror included).",
           per(lambda f: f.used))
    metric("ethoscope_backup_destination_raw_mirror_bytes", "gauge",
           "Bytes of the raw database mirror (.ethoscope-backup/raw) in the destination.", per(lambda f: f.raw))
    metric("ethoscope_backup_destination_growth_bytes_per_second", "gauge",
           "How fast the destination's file system fills, over the last week (absent until known).",
           per(lambda f: round(f.per_day / DAY, 3), lambda f: f.per_day is not None))
    metric("ethoscope_backup_destination_full_in_seconds", "gauge",
           "Time until the destination's file system is full at that rate (absent when not filling).",
           per(lambda f: round(f.days * DAY), lambda f: f.days is not None))
    metric("ethoscope_backup_destination_full_soon", "gauge",
           "1 if the destination will be full within the warning horizon ([alert] disk_horizon).",
           per(lambda f: 1 if f.short(horizon_days) else 0))
