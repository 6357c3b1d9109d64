"""Status → JSON documents, an HTML page and Prometheus text. Pure functions, no I/O.

Inputs are the parsed ``status.json`` and ``history.json`` (dicts, or ``None`` when a file is
missing), read into :mod:`ethoscope_rsync.model` records; neither input is modified. ``now`` is an
epoch float supplied by the caller; ``stale_after`` is in seconds.

This is the only module that formats the model for people and for the upstream node: the
``/status`` document keeps every key path of the upstream ``rsync_backup_tool`` answer
(``devices.ID.{name,status,started,ended,processing,count,metadata,progress,synced,transfer_details}``
and ``disk_usage_summary``), with file records keyed by file name as the node's reader looks them up.
"""
from __future__ import annotations

import dataclasses
import html
import math
import os
import re

from ethoscope_rsync.humanize import format_age, format_time, human_rate, human_size
from ethoscope_rsync.model import COMPLETED, ERROR, KINDS, QUEUED, RUNNING, DeviceHistory, DeviceRun, \
    FileCopy, History, Inventory, Status, Transfer, is_stale


@dataclasses.dataclass(frozen=True)
class DeviceView:
    """One device as every rendering sees it: its run in the current pass (if any) and its history."""
    key: str
    run: DeviceRun | None
    past: DeviceHistory
    stale: bool

    @property
    def name(self) -> str:
        return (self.run.name if self.run else "") or self.past.name

    @property
    def address(self) -> str:
        return (self.run.address if self.run else "") or self.past.address

    @property
    def state(self) -> str:
        return self.run.state if self.run else (self.past.last_outcome or "unknown")

    @property
    def percent(self) -> float:
        if self.run:
            return max(0.0, min(100.0, self.run.progress.percent))
        return 100.0 if self.past.last_outcome == COMPLETED else 0.0

    @property
    def message(self) -> str:
        if self.run:
            return self.run.progress.message
        return "not in the current pass (from history)"

    @property
    def bytes_copied(self) -> int:
        if self.run:
            return sum(t.bytes_sent for t in self.run.transfers.values())
        return self.past.last_bytes

    @property
    def files_copied(self) -> int:
        return sum(t.files_received for t in self.run.transfers.values()) if self.run else 0


@dataclasses.dataclass(frozen=True)
class View:
    status: Status
    history: History
    devices: dict                     # key -> DeviceView, sorted by name
    has_status: bool


def view(status, history, now: float, stale_after: float) -> View:
    """The model read from the two documents, with every device's run and history side by side."""
    current, past = Status.from_json(status), History.from_json(history)
    devices = {}
    for key in set(current.devices) | set(past.devices):
        entry = past.devices.get(key) or DeviceHistory()
        devices[key] = DeviceView(key, current.devices.get(key), entry,
                                  is_stale(entry.last_success, now, stale_after))
    ordered = dict(sorted(devices.items(), key=lambda item: (item[1].name, item[0])))
    return View(current, past, ordered, status is not None and current.run.pid != 0)


def last_backup_time(v: View) -> float:
    return v.history.last_backup


# ---------------------------------------------------------------- upstream shapes

def _file_record(path: str, size: int, copy: FileCopy | None) -> dict:
    record = {"path": path, "relative_path": path, "size_bytes": size, "size_human": human_size(size),
              "status": "completed", "transfer_speed": "", "transfer_start": 0, "transfer_end": 0}
    if copy is not None:
        record.update(transfer_speed=human_rate(copy.transferred / max(copy.end - copy.start, 1e-6)),
                      transfer_start=copy.start, transfer_end=copy.end)
    return record


def _by_name(records: dict) -> dict:
    """Path-keyed records re-keyed by base name (the node's reader looks files up by name);
    of two files with one name, the newest path wins."""
    return {os.path.basename(path): records[path] for path in sorted(records)}


def _transfer_kind(transfer: Transfer | None) -> dict:
    transfer = transfer or Transfer()
    files = {path: _file_record(path, f.size, f) for path, f in transfer.files.items()}
    return {"files": _by_name(files), "total_bytes": transfer.bytes_received,
            "total_files": transfer.files_received, "completion_time": transfer.ended}


def _synced_kind(kind: str, inventory: Inventory | None, transfer: Transfer | None, directory: str) -> dict:
    inventory = inventory or Inventory()
    received = transfer.files if transfer else {}
    files = {path: _file_record(path, size, received.get(path)) for path, size in inventory.newest().items()}
    for path, copy in received.items():
        files.setdefault(path, _file_record(path, copy.size, copy))
    return {"type": kind, "directory": directory, "local_files": inventory.files,
            "disk_usage_bytes": inventory.bytes, "disk_usage_human": human_size(inventory.bytes),
            "detailed_files": _by_name(files)}


def _device_entry(d: DeviceView, v: View, now: float) -> dict:
    run, past = d.run, d.past
    transfers = run.transfers if run else {}
    transfer_details = {kind: _transfer_kind(transfers.get(kind)) for kind in KINDS}
    synced = {kind: _synced_kind(kind, past.inventory.get(kind), transfers.get(kind),
                                 v.history.destinations.get(kind, "")) for kind in KINDS}
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
            "last_success": past.last_success, "last_error": (run.error if run else "") or past.last_error,
            "last_error_time": past.last_error_time, "attempts": run.attempts if run else 0,
            "stale": d.stale, "from_history": run is None, "databases": databases}


def _summary(v: View) -> dict:
    out = {}
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


def status_document(status, history, now: float, stale_after: float) -> dict:
    """``GET /status``: upstream-compatible, plus the pass, the devices in it and staleness."""
    v = view(status, history, now, stale_after)
    processing = _processing(v)
    doc = {"devices": {key: _device_entry(d, v, now) for key, d in v.devices.items()},
           "disk_usage_summary": _summary(v), **_root(v),
           "current_device": processing[0]["device_name"] if processing else None,
           "current_file": processing[0]["current_file"] if processing else None,
           "processing_devices": processing,
           "run": dataclasses.asdict(v.status.run), "generated": v.status.generated,
           "stale_after": stale_after, "stale_devices": [k for k, d in v.devices.items() if d.stale]}
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
    if match:
        number = int(match.group(1))
        for k, d in devices.items():
            name = _DEVICE_KEY_RE.fullmatch(d.name)
            if name and int(name.group(1)) == number:
                return k
    return None


def device_document(status, history, key: str, now: float, stale_after: float):
    """``GET /status/<key>``: one device record with its id, or ``None`` when unknown."""
    v = view(status, history, now, stale_after)
    k = find_device(v.devices, key)
    if k is None:
        return None
    return {"id": k, "device": _device_entry(v.devices[k], v, now)}


def next_change(status, history, now: float, stale_after: float) -> float:
    """Earliest time after ``now`` when a rendering changes without the files changing."""
    v = view(status, history, now, stale_after)
    flips = [d.past.last_success + stale_after for d in v.devices.values()
             if d.past.last_success > 0 and d.past.last_success + stale_after >= now]
    if v.status.run.active:
        flips.append(now + 1.0)    # the pass's duration in the metrics grows
    return min(flips, default=math.inf)


# ---------------------------------------------------------------- HTML

_STATE_CLASS = {COMPLETED: "ok", ERROR: "err", RUNNING: "run", QUEUED: "queue"}

_CSS = """
body{font-family:system-ui,sans-serif;margin:1.5em;color:#222}
h1{font-size:1.4em;margin:0 0 .3em}
.summary{margin:.3em 0 1em;color:#444}
table{border-collapse:collapse;width:100%}
th,td{padding:.35em .6em;border-bottom:1px solid #ddd;text-align:left;vertical-align:top}
th{background:#f3f3f3}
td.num{text-align:right;white-space:nowrap}
.bar{width:10em;height:.9em;background:#eee;border-radius:3px;overflow:hidden;display:inline-block}
.bar span{display:block;height:100%;background:#4a90d9}
.ok{color:#1a7f37}.err{color:#c62828}.run{color:#1565c0}.queue{color:#777}
.stale{background:#fff4e5}
.small{font-size:.85em;color:#666}
"""


def _e(value) -> str:
    return html.escape(str(value), quote=True)


def _pass_summary(v: View) -> str:
    run = v.status.run
    if not v.has_status:
        return "No pass since boot." if v.devices else "No backup pass yet."
    if run.active:
        message = run.message.rstrip(".")
        return "Pass in progress: %d of %d devices done, %d failed.%s" % (
            run.devices_done, run.devices_total, run.devices_failed,
            (" %s." % (message[:1].upper() + message[1:])) if message else "")
    return "Idle. Last pass: %s (%s)." % (run.outcome or "unknown", format_time(run.ended) or "-")


def _html_row(d: DeviceView, now: float) -> str:
    state, pct, last = d.state, d.percent, d.past.last_success
    when = ('%s <span class="small">(%s ago)</span>' % (_e(format_time(last)), _e(format_age(now - last)))
            if last else "never")
    message = d.message
    error = (d.run.error if d.run else "") or d.past.last_error
    if state == ERROR and error and error != message:
        message = (message + ": " if message else "") + error
    return ('<tr class="device%s" data-id="%s"><td><b>%s</b><br><span class="small">%s %s</span></td>'
            '<td class="%s">%s%s</td>'
            '<td><span class="bar" title="%.0f%%"><span style="width:%.1f%%"></span></span> %.0f%%</td>'
            '<td>%s</td><td class="num">%s<br><span class="small">%d files</span></td><td>%s</td></tr>'
            % (" stale" if d.stale else "", _e(d.key), _e(d.name or d.key), _e(d.key), _e(d.address),
               _STATE_CLASS.get(state, ""), _e(state or "-"), " (stale)" if d.stale else "",
               pct, pct, pct, when, _e(human_size(d.bytes_copied)), d.files_copied, _e(message)))


def render_html(status, history, now: float, stale_after: float, refresh: int = 5) -> str:
    """A readable page: one row per device; meta refresh only while a pass is active."""
    v = view(status, history, now, stale_after)
    parts = ['<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">',
             '<meta name="viewport" content="width=device-width, initial-scale=1">']
    if v.status.run.active:
        parts.append('<meta http-equiv="refresh" content="%d">' % int(refresh))
    parts.append("<title>ethoscope backup status</title><style>%s</style></head><body>" % _CSS)
    parts.append("<h1>ethoscope backup</h1>")
    parts.append('<p class="summary" id="summary">%s Last completed backup: %s. %d devices, %d stale.</p>'
                 % (_e(_pass_summary(v)), _e(format_time(last_backup_time(v)) or "never"), len(v.devices),
                    sum(1 for d in v.devices.values() if d.stale)))
    parts.append('<table id="devices"><thead><tr><th>Device</th><th>State</th><th>Progress</th>'
                 '<th>Last success</th><th>Copied</th><th>Error / message</th></tr></thead><tbody>')
    parts.extend(_html_row(d, now) for d in v.devices.values())
    parts.append("</tbody></table>")
    parts.append('<p class="small">Generated %s. JSON: <a href="status">/status</a>, '
                 '<a href="metrics">/metrics</a>.</p></body></html>' % _e(format_time(now)))
    return "".join(parts)


# ---------------------------------------------------------------- Prometheus

def _label(value) -> str:
    return str(value).replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _fmt(value) -> str:
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    return repr(value)


def render_metrics(status, history, now: float, stale_after: float) -> str:
    """Prometheus text exposition format 0.0.4."""
    v = view(status, history, now, stale_after)
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
    return "\n".join(lines) + "\n"
