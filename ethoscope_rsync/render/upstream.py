"""Status → JSON documents, an HTML page and Prometheus text. Pure functions, no I/O.

Inputs are the parsed ``status.json`` and ``history.json`` (dicts, or ``None`` when a file is
missing), read into :mod:`ethoscope_rsync.state.model` records; neither input is modified. ``now`` is an
epoch float supplied by the caller; ``stale_after`` is in seconds; ``horizon_days`` is ``[alert]
disk_horizon`` (a destination full sooner is flagged).

Only the render modules format the model for people and for the upstream node: this one (JSON
and Prometheus text), :mod:`~ethoscope_rsync.render.terminal` (``ethoscope-backup status``),
:mod:`~ethoscope_rsync.render.page` (the HTML page, re-exported here as ``render_html``),
:mod:`~ethoscope_rsync.render.svg` (its charts) and :mod:`~ethoscope_rsync.render.alert` (alert
messages). The ``/status`` document keeps every key path
of the upstream ``rsync_backup_tool`` answer
(``devices.ID.{name,status,started,ended,processing,count,metadata,progress,synced,transfer_details}``
and ``disk_usage_summary``), with file records keyed by file name as the node's reader looks them up.
"""
from __future__ import annotations

import dataclasses
import math
import os
import re

from ethoscope_rsync.state import forecast
from ethoscope_rsync.render import offsite
from ethoscope_rsync.render.humanize import format_days, format_time, human_rate, human_size
from ethoscope_rsync.state.model import KINDS, RUNNING, FileCopy, Transfer
from ethoscope_rsync.state.history import Inventory
from ethoscope_rsync.render.page import render_html  # noqa: F401 (the web service's entry point)
from ethoscope_rsync.state.views import DeviceView, View, last_backup_time, view
from ethoscope_rsync.render import dataage, disk_metrics


# ---------------------------------------------------------------- upstream shapes

MEASURABLE = 0.01     # seconds: a file's copy that took less has no meaningful speed
DATABASE_SUFFIX = ".db"


def _file_record(path: str, size: int, copy: FileCopy | None) -> dict:
    record = {"path": path, "relative_path": path, "size_bytes": size, "size_human": human_size(size),
              "status": "completed", "transfer_speed": "", "transfer_start": 0, "transfer_end": 0}
    if copy is not None:
        seconds = copy.end - copy.start      # too short to be measured (a small file in a burst): no speed
        record.update(transfer_speed=human_rate(copy.transferred / seconds) if seconds >= MEASURABLE else "",
                      transfer_start=copy.start, transfer_end=copy.end)
    return record


def _by_name(records: dict) -> dict:
    """Path-keyed records re-keyed by base name (the node's reader looks files up by name);
    of two files with one name, the newest path wins."""
    return {os.path.basename(path): records[path] for path in sorted(records)}


# What /status names file by file, for the node's reader (ethoscope_node backup helpers), which
# fetches the whole document for every device page it shows, with a 5 s timeout: every database
# (it looks each one up by name under synced.results), and no video. For videos it takes
# synced.videos.detailed_files, else transfer_details.videos.files, and only when both are empty
# (with local_files > 0) walks synced.videos.directory/<machine id>/ on the node itself: a list
# of some chunks (the newest, those of this pass) would hide the others from it, and every chunk
# of 40 devices is tens of megabytes a poll. /status/<device> lists the newest files of each kind.
LISTED_IN_STATUS = {"results": DATABASE_SUFFIX, "videos": None}


def _transfer_kind(transfer: Transfer | None, listed: bool = True) -> dict:
    transfer = transfer or Transfer()
    files = {path: _file_record(path, f.size, f) for path, f in transfer.files.items()} if listed else {}
    return {"files": _by_name(files), "total_bytes": transfer.bytes_received,
            "total_files": transfer.files_received, "completion_time": transfer.ended}


def _synced_kind(kind: str, inventory: Inventory | None, transfer: Transfer | None, directory: str,
                 full: bool) -> dict:
    """One tree of a device on the node. `full`: its newest files and this pass's (the device's
    own view); else only what /status lists of that kind (LISTED_IN_STATUS)."""
    inventory = inventory or Inventory()
    received = transfer.files if transfer else {}
    suffix = LISTED_IN_STATUS[kind]
    if full:
        chosen = inventory.newest()
        chosen.update((p, size) for p, size in inventory.present.items() if suffix and p.endswith(suffix))
    else:
        chosen = {p: size for p, size in inventory.present.items() if suffix and p.endswith(suffix)}
        received = {p: copy for p, copy in received.items() if suffix and p.endswith(suffix)}
    files = {path: _file_record(path, size, received.get(path)) for path, size in chosen.items()}
    for path, copy in received.items():
        files.setdefault(path, _file_record(path, copy.size, copy))
    return {"type": kind, "directory": directory, "local_files": inventory.files,
            "disk_usage_bytes": inventory.bytes, "disk_usage_human": human_size(inventory.bytes),
            "detailed_files": _by_name(files)}


def _device_entry(d: DeviceView, v: View, now: float, full: bool = False) -> dict:
    """A device's record: in /status (`full` False) with the files LISTED_IN_STATUS, in
    /status/<device> with its newest files of each kind."""
    run, past = d.run, d.past
    transfers = run.transfers if run else {}
    transfer_details = {kind: _transfer_kind(transfers.get(kind), full or LISTED_IN_STATUS[kind] is not None)
                        for kind in KINDS}
    synced = {kind: _synced_kind(kind, past.inventory.get(kind), transfers.get(kind),
                                 v.history.destinations.get(kind, ""), full) for kind in KINDS}
    synced["transfer_details"] = transfer_details     # the upstream tool nests a copy here too
    ended = int(run.ended) if run else int(max(past.last_success, past.last_error_time))
    progress = {"backup_status": round(d.percent, 1), "status": d.state, "message": d.message,
                "backup_method": "rsync", "backup_type": v.status.run.what,
                "backup_size": sum(s["disk_usage_bytes"] for k, s in synced.items() if k in KINDS),
                "completion_time": ended,
                "time_since_backup": round(now - past.last_success, 1) if past.last_success else 0.0,
                "bytes_transferred": run.progress.bytes if run else 0,
                "rate_bps": round(run.progress.rate) if run else 0,
                "current_file": run.progress.current_file if run else "",
                "kind": run.progress.kind if run else ""}
    databases = {path: {"verdict": verdict.verdict, "rows": verdict.rows, "checked": verdict.checked,
                        "message": verdict.message} for path, verdict in (run.databases if run else {}).items()}
    return {"id": d.key, "name": d.name, "ip": d.address, "status": d.state,
            "started": int(run.started) if run else 0, "ended": ended if d.state != RUNNING else 0,
            "processing": bool(run and run.processing), "count": past.count, "metadata": {},
            "progress": progress, "synced": synced, "transfer_details": transfer_details,
            "last_success": past.last_success, **dataage.device_fields(past, now),
            "last_error": (run.error if run else "") or past.last_error,
            "last_error_time": past.last_error_time, "attempts": run.attempts if run else 0,
            "stale": d.stale, "from_history": run is None, "databases": databases,
            "verification": _verification(v, d.key), "warnings": list(run.warnings) if run else [],
            "cipher": d.cipher,
            "cipher_reason": run.cipher_reason if run else ""}


def _verification(v: View, key: str) -> dict | None:
    """The device's last ``ethoscope-backup verify`` (None: never verified)."""
    checked = v.history.verification.get(key)
    if checked is None:
        return None
    return {"time": format_time(checked.at), "timestamp": checked.at, "files": checked.files,
            "bytes": checked.bytes, "damaged_count": checked.damaged_count, "damaged": checked.damaged,
            "complete": checked.complete}


def disk_document(v: View, horizon_days: float) -> dict:
    """Each destination at the end of the last pass: its file system's free and total bytes, what
    our copies take there (raw database mirror included), the growth a day and days to full."""
    out = {}
    for kind, f in forecast.forecasts(v.history.disk).items():
        out[kind] = {"path": v.history.destinations.get(kind, ""), "measured": f.at,
                     "free_bytes": f.free, "total_bytes": f.total, "used_bytes": f.used,
                     "raw_mirror_bytes": f.raw, "growth_bytes_per_day": f.per_day, "days_to_full": f.days,
                     "full_in": format_days(f.days) if f.days is not None else "",
                     "warning": f.short(horizon_days), "shares_file_system_with": list(f.shared),
                     "free_human": human_size(f.free), "total_human": human_size(f.total),
                     "used_human": human_size(f.used),
                     "growth_human": "%s/day" % human_size(f.per_day) if f.per_day is not None else ""}
    return {"destinations": out, "horizon_days": horizon_days, "samples": len(v.history.disk)}


def _summary(v: View) -> dict:
    out: dict = {}
    for kind in KINDS:
        inventories = [d.past.inventory.get(kind) or Inventory() for d in v.devices.values()]
        size = sum(i.bytes for i in inventories)
        out[kind] = {"total_files": sum(i.files for i in inventories), "total_size_bytes": size,
                     "total_size_human": human_size(size)}
    size = out["results"]["total_size_bytes"] + out["videos"]["total_size_bytes"]
    out["combined"] = {"total_files": out["results"]["total_files"] + out["videos"]["total_files"],
                       "total_size_bytes": size, "total_size_human": human_size(size)}
    return out


def _root(v: View) -> dict:
    return {"status": "running" if v.status.run.active else "idle",
            "last_backup": format_time(last_backup_time(v))}


def root_document(status, history) -> dict:
    """``GET /``: ``{"status": "running"|"idle", "last_backup": "YYYY-MM-DD HH:MM:SS" or ""}``."""
    return _root(view(status, history, 0.0, 0.0))


def _processing(v: View) -> list:
    return [{"device_id": d.key, "device_name": d.name, "current_file": d.run.progress.current_file}
            for d in v.devices.values() if d.run and d.run.processing]


def status_document(status, history, now: float, stale_after: float, horizon_days: float) -> dict:
    """``GET /status``: upstream-compatible, plus the pass, the devices in it, staleness and the disk."""
    v = view(status, history, now, stale_after)
    processing = _processing(v)
    doc = {"devices": {key: _device_entry(d, v, now) for key, d in v.devices.items()},
           "disk_usage_summary": _summary(v), **_root(v),
           "current_device": processing[0]["device_name"] if processing else None,
           "current_file": processing[0]["current_file"] if processing else None,
           "processing_devices": processing,
           "run": dataclasses.asdict(v.status.run), "generated": v.status.generated,
           "stale_after": stale_after, "stale_devices": [k for k, d in v.devices.items() if d.stale],
           **dataage.document_fields(v, now),
           "disk": disk_document(v, horizon_days)}
    if v.history.offsite is not None:           # the second copy (offsite.json), when there is one
        doc["offsite"] = offsite.document(v.history.offsite, now)
    if not v.has_status:
        doc["message"] = ("no backup pass yet" if not v.devices
                          else "no pass since the last reboot; devices from history")
    return doc


_DEVICE_KEY_RE = re.compile(r"(?:ETHOSCOPE_)?([0-9]{1,4})", re.IGNORECASE)


def find_device(devices: dict, key: str):
    """Resolve a machine id, ``ETHOSCOPE_004``, ``004`` or ``4`` to a key of ``devices`` (or None).

    `devices` maps keys to anything with a ``name``. Keys longer than a machine id never match.
    """
    key = key.strip() if isinstance(key, str) else ""
    if not key or len(key) > 64:
        return None
    if key in devices:
        return key
    low = key.lower()
    for k, d in devices.items():
        if k.lower() == low or d.name.lower() == low:
            return k
    match = _DEVICE_KEY_RE.fullmatch(key)
    if match:      # by number: only when one device has it (a history may keep an ETHOSCOPE_0042)
        number = int(match.group(1))
        found = [k for k, d in devices.items()
                 if (name := _DEVICE_KEY_RE.fullmatch(d.name)) and int(name.group(1)) == number]
        return found[0] if len(found) == 1 else None
    return None


def device_document(status, history, key: str, now: float, stale_after: float):
    """``GET /status/<key>``: one device record with its id, or ``None`` when unknown."""
    v = view(status, history, now, stale_after)
    k = find_device(v.devices, key)
    if k is None:
        return None
    return {"id": k, "device": _device_entry(v.devices[k], v, now, full=True)}


def next_change(status, history, now: float, stale_after: float) -> float:
    """Earliest time after ``now`` when a rendering changes without the files changing."""
    v = view(status, history, now, stale_after)
    flips = [d.past.last_success + stale_after for d in v.devices.values()
             if d.past.last_success > 0 and d.past.last_success + stale_after >= now]
    if v.status.run.active:
        flips.append(now + 1.0)    # the pass's duration in the metrics grows
    flips += offsite.changes(v.history.offsite, now)
    return min(flips, default=math.inf)


# ---------------------------------------------------------------- Prometheus

def _label(value) -> str:
    return str(value).replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _fmt(value) -> str:
    if isinstance(value, float) and math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    return repr(value)


def render_metrics(status, history, now: float, stale_after: float, horizon_days: float, v=None) -> str:
    """Prometheus text exposition format 0.0.4 (`v`: the documents' View, when the caller has read it)."""
    v = v if v is not None else view(status, history, now, stale_after)
    run = v.status.run
    lines = []

    def metric(name, mtype, help_, samples):
        lines.append("# HELP %s %s" % (name, help_))
        lines.append("# TYPE %s %s" % (name, mtype))
        for labels, value in samples:
            if labels:
                lines.append("%s{%s} %s" % (name, ",".join('%s="%s"' % (k, _label(x)) for k, x in labels),
                                            _fmt(value)))
            else:
                lines.append("%s %s" % (name, _fmt(value)))

    duration = round(max(0.0, (run.ended or now) - run.started), 3) if run.started else 0
    metric("ethoscope_backup_run_active", "gauge", "1 while a backup pass is running.",
           [((), 1 if run.active else 0)])
    metric("ethoscope_backup_run_started_timestamp_seconds", "gauge",
           "Start of the current or last pass (0 if none since boot).", [((), run.started)])
    metric("ethoscope_backup_run_duration_seconds", "gauge",
           "Duration of the current (so far) or last pass.", [((), duration)])
    metric("ethoscope_backup_run_devices", "gauge", "Devices in the current or last pass, by state.",
           [((("state", "total"),), run.devices_total), ((("state", "done"),), run.devices_done),
            ((("state", "failed"),), run.devices_failed)])
    metric("ethoscope_backup_last_backup_timestamp_seconds", "gauge",
           "End of the last completed pass (0 if never).", [((), last_backup_time(v))])
    metric("ethoscope_backup_stale_devices", "gauge",
           "Devices whose last success is older than the stale threshold (or never).",
           [((), sum(1 for d in v.devices.values() if d.stale))])
    metric("ethoscope_backup_stale_threshold_seconds", "gauge", "Stale threshold.", [((), stale_after)])

    def per(value):
        return [((("device_id", k), ("device_name", d.name)), value(d)) for k, d in v.devices.items()]

    metric("ethoscope_backup_device_last_success_timestamp_seconds", "gauge",
           "Last successful backup of the device (0 if never).", per(lambda d: d.past.last_success))
    dataage.metrics(metric, v, now)
    metric("ethoscope_backup_device_stale", "gauge", "1 if the device is stale.",
           per(lambda d: 1 if d.stale else 0))
    metric("ethoscope_backup_device_last_outcome", "gauge",
           "Last job outcome of the device (the outcome label has value 1).",
           [((("device_id", k), ("device_name", d.name), ("outcome", d.state)), 1) for k, d in v.devices.items()])
    metric("ethoscope_backup_device_progress_ratio", "gauge", "Progress of the device's job, 0 to 1.",
           per(lambda d: round(d.percent / 100.0, 4)))
    metric("ethoscope_backup_device_bytes_transferred", "gauge",
           "Bytes transferred for the device in the current or last pass.", per(lambda d: d.bytes_copied))
    metric("ethoscope_backup_device_files_transferred", "gauge",
           "Files transferred for the device in the current pass.", per(lambda d: d.files_copied))
    checked = [(k, d, v.history.verification[k]) for k, d in v.devices.items() if k in v.history.verification]
    metric("ethoscope_backup_device_last_verified_timestamp_seconds", "gauge",
           "End of the device's last 'ethoscope-backup verify' (devices never verified are absent).",
           [((("device_id", k), ("device_name", d.name)), c.at) for k, d, c in checked])
    metric("ethoscope_backup_device_damaged_files", "gauge",
           "Files of the device its last verify found damaged.",
           [((("device_id", k), ("device_name", d.name)), c.damaged_count) for k, d, c in checked])
    disk_metrics.metrics(metric, forecast.forecasts(v.history.disk), v.history.destinations, horizon_days)
    offsite.metrics(metric, v.history.offsite, now)
    return "\n".join(lines) + "\n"
