"""Status → JSON documents, an HTML page and Prometheus text. Pure functions, no I/O.

Inputs are the runner's ``status.json`` (``status``, or ``None`` when no run has written it yet)
and the persistent ``history.json`` (``history``, or ``None``). Neither input is modified.
``now`` is an epoch float supplied by the caller; ``stale_after`` is in seconds.

The ``/status`` document keeps every key path of the upstream ``rsync_backup_tool`` answer
(``devices.ID.{name,status,started,ended,processing,count,metadata,progress,synced,transfer_details}``
and ``disk_usage_summary``) and adds our own fields next to them.
"""
from __future__ import annotations

import html
import math
import re
import time

from ethoscope_rsync.units import format_age, format_time, human_size  # noqa: F401 (part of this API)

KINDS = ("results", "videos")
FILE_DEFAULTS = {"path": "", "relative_path": "", "size_bytes": 0, "size_human": "0 B",
                 "status": "", "transfer_speed": "", "transfer_start": 0, "transfer_end": 0}
PROGRESS_DEFAULTS = {"backup_status": 0.0, "status": "", "message": "", "backup_method": "rsync",
                     "backup_type": "unified", "backup_size": 0, "completion_time": 0,
                     "time_since_backup": 0.0, "bytes_transferred": 0, "rate_bps": "",
                     "current_file": "", "kind": ""}
ACTIVE_OUTCOMES = ("running",)


# ---------------------------------------------------------------- small helpers

def _num(v, default=0):
    if isinstance(v, bool):
        return int(v)
    if isinstance(v, (int, float)):
        return v if math.isfinite(v) else default
    try:
        f = float(v)
        return f if math.isfinite(f) else default
    except (TypeError, ValueError):
        return default


def _dict(v) -> dict:
    return v if isinstance(v, dict) else {}


def _str(v) -> str:
    return v if isinstance(v, str) else ("" if v is None else str(v))


def _devices(doc) -> dict:
    return {k: v for k, v in _dict(_dict(doc).get("devices")).items() if isinstance(v, dict)}


# ---------------------------------------------------------------- device records

def _file_record(rec) -> dict:
    out = dict(FILE_DEFAULTS)
    out.update(_dict(rec))
    if not out.get("relative_path"):
        out["relative_path"] = out.get("path", "")
    if "size_human" not in _dict(rec):
        out["size_human"] = human_size(out.get("size_bytes"))
    return out


def _synced_kind(rec, kind: str) -> dict:
    rec = _dict(rec)
    out = {"local_files": 0, "directory": "", "disk_usage_bytes": 0, "type": kind}
    out.update(rec)
    if "disk_usage_human" not in rec:
        out["disk_usage_human"] = human_size(out["disk_usage_bytes"])
    out["detailed_files"] = {str(k): _file_record(v)
                             for k, v in _dict(rec.get("detailed_files")).items()}
    return out


def _transfer_kind(rec) -> dict:
    rec = _dict(rec)
    files = {str(k): _file_record(v) for k, v in _dict(rec.get("files")).items()}
    out = {"total_bytes": sum(_num(f.get("size_bytes")) for f in files.values()),
           "total_files": len(files), "completion_time": 0}
    out.update(rec)
    out["files"] = files
    return out


def _hist_devices(history) -> dict:
    return _devices(history)


def _last_success(dev: dict, hist: dict) -> float:
    return max(_num(dev.get("last_success")), _num(hist.get("last_success")))


def is_stale(last_success, now, stale_after) -> bool:
    """A device is stale when its last success is older than ``stale_after`` (or never happened)."""
    ls = _num(last_success)
    return ls <= 0 or (_num(now) - ls) > _num(stale_after)


def _device_entry(key: str, dev: dict, hist: dict, now: float, stale_after: float) -> dict:
    """One upstream-compatible device record (a new dict; inputs untouched)."""
    from_history = not dev
    out = {"id": key, "name": "", "ip": "", "status": "", "started": 0, "ended": 0,
           "processing": False, "count": 0, "metadata": {}, "last_error": "",
           "last_error_time": 0, "attempts": 0, "databases": {}}
    out.update(dev)
    if from_history:
        outcome = _str(hist.get("last_outcome"))
        out.update({"name": _str(hist.get("name")), "status": outcome or "unknown",
                    "last_error": _str(hist.get("last_error")),
                    "last_error_time": _num(hist.get("last_error_time"))})
    if not out.get("name") and hist.get("name"):
        out["name"] = _str(hist.get("name"))
    out["metadata"] = _dict(out.get("metadata"))

    progress = dict(PROGRESS_DEFAULTS)
    progress.update(_dict(dev.get("progress")))
    if from_history:
        progress.update({"status": _str(hist.get("last_outcome")),
                         "backup_status": 100.0 if hist.get("last_outcome") == "completed" else 0.0,
                         "message": "not in the current run (from history)",
                         "bytes_transferred": _num(hist.get("last_bytes")),
                         "completion_time": _num(hist.get("last_success"))})
    out["progress"] = progress

    details = _dict(dev.get("transfer_details"))
    transfer = {kind: _transfer_kind(details.get(kind)) for kind in KINDS}
    for kind, rec in details.items():
        if kind not in transfer:
            transfer[kind] = rec
    out["transfer_details"] = transfer

    synced_in = _dict(dev.get("synced"))
    synced = {kind: _synced_kind(synced_in.get(kind), kind) for kind in KINDS}
    for kind, rec in synced_in.items():
        if kind not in synced and kind != "transfer_details":
            synced[kind] = rec
    synced["transfer_details"] = transfer  # the upstream tool nests a copy here too
    out["synced"] = synced

    last_success = _last_success(dev, hist)
    out["last_success"] = last_success
    out["last_success_human"] = format_time(last_success)
    out["stale"] = is_stale(last_success, now, stale_after)
    out["from_history"] = from_history
    out["files_transferred"] = sum(_num(t.get("total_files")) for t in transfer.values()
                                   if isinstance(t, dict))
    out["bytes_transferred"] = _device_bytes(out, hist)
    return out


def _device_bytes(entry: dict, hist: dict) -> float:
    b = _num(entry["progress"].get("bytes_transferred"))
    if not b:
        b = sum(_num(t.get("total_bytes")) for t in entry["transfer_details"].values()
                if isinstance(t, dict))
    if not b and entry.get("from_history"):
        b = _num(hist.get("last_bytes"))
    return b


def device_entries(status, history, now: float, stale_after: float) -> dict:
    """All devices, from the current status and from history (history-only ones flagged)."""
    devs = _devices(status)
    hist = _hist_devices(history)
    out = {}
    for key, dev in devs.items():
        out[key] = _device_entry(key, dev, _dict(hist.get(key)), now, stale_after)
    for key, h in hist.items():
        if key not in out:
            out[key] = _device_entry(key, {}, h, now, stale_after)
    return out


def _summary(status, devices: dict) -> dict:
    given = _dict(_dict(status).get("disk_usage_summary"))
    out = {}
    for kind in KINDS:
        rec = _dict(given.get(kind))
        if not rec:
            files = sum(_num(d["synced"][kind].get("local_files")) for d in devices.values())
            size = sum(_num(d["synced"][kind].get("disk_usage_bytes")) for d in devices.values())
            rec = {"total_files": files, "total_size_bytes": size}
        rec = {"total_files": 0, "total_size_bytes": 0, **rec}
        rec.setdefault("total_size_human", human_size(rec["total_size_bytes"]))
        out[kind] = rec
    comb = _dict(given.get("combined"))
    if not comb:
        comb = {"total_files": sum(_num(out[k]["total_files"]) for k in KINDS),
                "total_size_bytes": sum(_num(out[k]["total_size_bytes"]) for k in KINDS)}
    comb = {"total_files": 0, "total_size_bytes": 0, **comb}
    comb.setdefault("total_size_human", human_size(comb["total_size_bytes"]))
    out["combined"] = comb
    for k, v in given.items():
        out.setdefault(k, v)
    return out


# ---------------------------------------------------------------- JSON documents

def run_active(status) -> bool:
    s = _dict(status)
    return s.get("status") == "running" or _dict(s.get("run")).get("outcome") in ACTIVE_OUTCOMES


def last_backup(status, history) -> str:
    lb = _str(_dict(status).get("last_backup"))
    if lb:
        return lb
    return format_time(_dict(history).get("last_backup"))


def root_document(status, history) -> dict:
    """``GET /``: ``{"status": "running"|"idle", "last_backup": "YYYY-MM-DD HH:MM:SS" or ""}``."""
    return {"status": "running" if run_active(status) else "idle",
            "last_backup": last_backup(status, history)}


def _run(status) -> dict:
    run = {"pid": 0, "started": 0, "ended": 0, "outcome": "", "devices_total": 0,
           "devices_done": 0, "devices_failed": 0, "bytes_transferred": 0,
           "files_transferred": 0, "message": ""}
    run.update(_dict(_dict(status).get("run")))
    return run


def status_document(status, history, now: float, stale_after: float) -> dict:
    """``GET /status``: upstream-compatible, plus run, history-only devices and staleness."""
    devices = device_entries(status, history, now, stale_after)
    doc = {"devices": devices, "disk_usage_summary": _summary(status, devices)}
    doc.update(root_document(status, history))
    s = _dict(status)
    doc["schema"] = s.get("schema", 1)
    doc["generated"] = _num(s.get("generated"))
    doc["run"] = _run(status)
    doc["stale_after"] = stale_after
    doc["stale_devices"] = sorted(k for k, d in devices.items() if d["stale"])
    if status is None:
        doc["message"] = ("no backup run yet" if not devices
                          else "no run since the last reboot; devices from history")
    return doc


_NUM_RE = re.compile(r"(?:ETHOSCOPE_)?0*([0-9]+)", re.IGNORECASE)


def find_device(devices: dict, key: str):
    """Resolve a machine id, ``ETHOSCOPE_004``, ``004`` or ``4`` to a key of ``devices`` (or None)."""
    key = _str(key).strip()
    if not key:
        return None
    if key in devices:
        return key
    low = key.lower()
    for k, d in devices.items():
        if k.lower() == low or _str(d.get("name")).lower() == low:
            return k
    m = _NUM_RE.fullmatch(key)
    if m:
        n = int(m.group(1))
        for k, d in devices.items():
            mm = _NUM_RE.fullmatch(_str(d.get("name")))
            if mm and int(mm.group(1)) == n:
                return k
    return None


def device_document(status, history, key: str, now: float, stale_after: float):
    """``GET /status/<key>``: one device record with its id, or ``None`` when unknown."""
    devices = device_entries(status, history, now, stale_after)
    k = find_device(devices, key)
    if k is None:
        return None
    return {"id": k, "device": devices[k]}


def next_change(status, history, now: float, stale_after: float) -> float:
    """Earliest time after ``now`` when a JSON/metrics rendering changes without the files changing."""
    t = math.inf
    hist = _hist_devices(history)
    keys = set(_devices(status)) | set(hist)
    devs = _devices(status)
    for k in keys:
        ls = _last_success(_dict(devs.get(k)), _dict(hist.get(k)))
        if ls > 0:
            flip = ls + _num(stale_after)
            if flip >= now:
                t = min(t, flip)
    if run_active(status):
        t = min(t, now + 1.0)  # run duration in the metrics grows
    return t


# ---------------------------------------------------------------- HTML

_STATE_CLASS = {"completed": "ok", "error": "err", "running": "run", "queued": "queue"}

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


def _e(v) -> str:
    return html.escape(_str(v), quote=True)


def render_html(status, history, now: float, stale_after: float, refresh: int = 5) -> str:
    """A readable page: one row per device; meta refresh only while a run is active."""
    devices = device_entries(status, history, now, stale_after)
    active = run_active(status)
    run = _run(status)
    head = ['<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">',
            '<meta name="viewport" content="width=device-width, initial-scale=1">']
    if active:
        head.append('<meta http-equiv="refresh" content="%d">' % int(refresh))
    head.append("<title>ethoscope backup status</title><style>%s</style></head><body>" % _CSS)
    parts = head
    parts.append("<h1>ethoscope backup</h1>")
    lb = last_backup(status, history)
    if status is None:
        summary = "No run since boot." if devices else "No backup run yet."
    elif active:
        message = _str(run["message"]).rstrip(".")
        summary = "Run in progress: %d of %d devices done, %d failed.%s" % (
            _num(run["devices_done"]), _num(run["devices_total"]), _num(run["devices_failed"]),
            (" %s." % (message[:1].upper() + message[1:])) if message else "")
    else:
        summary = "Idle. Last run: %s (%s)." % (_str(run["outcome"]) or "unknown",
                                                 format_time(run["ended"]) or "-")
    parts.append('<p class="summary" id="summary">%s Last completed backup: %s. %d devices, %d stale.</p>'
                 % (_e(summary), _e(lb or "never"), len(devices),
                    sum(1 for d in devices.values() if d["stale"])))
    parts.append('<table id="devices"><thead><tr><th>Device</th><th>State</th><th>Progress</th>'
                 '<th>Last success</th><th>Transferred</th><th>Error / message</th></tr></thead><tbody>')
    for key in sorted(devices, key=lambda k: (_str(devices[k].get("name")), k)):
        d = devices[key]
        p = d["progress"]
        state = _str(p.get("status")) or _str(d.get("status"))
        pct = max(0.0, min(100.0, float(_num(p.get("backup_status")))))
        ls = d["last_success"]
        when = ("%s <span class=\"small\">(%s ago)</span>" % (_e(format_time(ls)), _e(format_age(now - ls)))
                if ls else "never")
        err = _str(p.get("message"))
        if state == "error" and d.get("last_error") and d.get("last_error") != err:
            err = (err + ": " if err else "") + _str(d.get("last_error"))
        cls = "device" + (" stale" if d["stale"] else "")
        parts.append(
            '<tr class="%s" data-id="%s"><td><b>%s</b><br><span class="small">%s %s</span></td>'
            '<td class="%s">%s%s</td>'
            '<td><span class="bar" title="%.0f%%"><span style="width:%.1f%%"></span></span> %.0f%%</td>'
            '<td>%s</td><td class="num">%s<br><span class="small">%d files</span></td><td>%s</td></tr>'
            % (cls, _e(key), _e(d.get("name") or key), _e(key), _e(d.get("ip")),
               _STATE_CLASS.get(state, ""), _e(state or "-"), " (stale)" if d["stale"] else "",
               pct, pct, pct, when, _e(human_size(d["bytes_transferred"])),
               _num(d["files_transferred"]), _e(err)))
    parts.append("</tbody></table>")
    parts.append('<p class="small">Generated %s. JSON: <a href="status">/status</a>, '
                 '<a href="metrics">/metrics</a>.</p></body></html>'
                 % _e(format_time(now)))
    return "".join(parts)


# ---------------------------------------------------------------- Prometheus

def _label(v) -> str:
    return _str(v).replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _fmt(v) -> str:
    v = _num(v)
    if isinstance(v, float) and v.is_integer() and abs(v) < 1e15:
        return str(int(v))
    return repr(v)


def render_metrics(status, history, now: float, stale_after: float) -> str:
    """Prometheus text exposition format 0.0.4."""
    devices = device_entries(status, history, now, stale_after)
    run = _run(status)
    active = run_active(status)
    lines = []

    def metric(name, mtype, help_, samples):
        lines.append("# HELP %s %s" % (name, help_))
        lines.append("# TYPE %s %s" % (name, mtype))
        for labels, value in samples:
            if labels:
                lab = ",".join('%s="%s"' % (k, _label(v)) for k, v in labels)
                lines.append("%s{%s} %s" % (name, lab, _fmt(value)))
            else:
                lines.append("%s %s" % (name, _fmt(value)))

    started = _num(run["started"])
    ended = _num(run["ended"])
    duration = round(max(0.0, (ended if ended else now) - started), 3) if started else 0
    metric("ethoscope_backup_run_active", "gauge", "1 while a backup pass is running.",
           [((), 1 if active else 0)])
    metric("ethoscope_backup_run_started_timestamp_seconds", "gauge",
           "Start of the current or last pass (0 if none since boot).", [((), started)])
    metric("ethoscope_backup_run_duration_seconds", "gauge",
           "Duration of the current (so far) or last pass.", [((), duration)])
    metric("ethoscope_backup_run_devices", "gauge", "Devices in the current or last pass, by state.",
           [((("state", "total"),), run["devices_total"]), ((("state", "done"),), run["devices_done"]),
            ((("state", "failed"),), run["devices_failed"])])
    metric("ethoscope_backup_last_backup_timestamp_seconds", "gauge",
           "End of the last completed pass (0 if never).",
           [((), _num(_dict(history).get("last_backup")) or _parse_local(last_backup(status, history)))])
    metric("ethoscope_backup_stale_devices", "gauge",
           "Devices whose last success is older than the stale threshold (or never).",
           [((), sum(1 for d in devices.values() if d["stale"]))])
    metric("ethoscope_backup_stale_threshold_seconds", "gauge", "Stale threshold.", [((), stale_after)])

    order = sorted(devices, key=lambda k: (_str(devices[k].get("name")), k))

    def per(fn):
        return [((("device_id", k), ("device_name", devices[k].get("name", ""))), fn(devices[k]))
                for k in order]

    metric("ethoscope_backup_device_last_success_timestamp_seconds", "gauge",
           "Last successful backup of the device (0 if never).", per(lambda d: d["last_success"]))
    metric("ethoscope_backup_device_stale", "gauge", "1 if the device is stale.",
           per(lambda d: 1 if d["stale"] else 0))
    metric("ethoscope_backup_device_last_outcome", "gauge",
           "Last job outcome of the device (the outcome label has value 1).",
           [((("device_id", k), ("device_name", devices[k].get("name", "")),
              ("outcome", _str(devices[k]["progress"].get("status")) or "unknown")), 1) for k in order])
    metric("ethoscope_backup_device_progress_ratio", "gauge", "Progress of the device's job, 0 to 1.",
           per(lambda d: round(_num(d["progress"].get("backup_status")) / 100.0, 4)))
    metric("ethoscope_backup_device_bytes_transferred", "gauge",
           "Bytes transferred for the device in the current or last pass.",
           per(lambda d: d["bytes_transferred"]))
    metric("ethoscope_backup_device_files_transferred", "gauge",
           "Files transferred for the device in the current or last pass.",
           per(lambda d: d["files_transferred"]))
    return "\n".join(lines) + "\n"


def _parse_local(s: str) -> float:
    if not s:
        return 0
    try:
        return time.mktime(time.strptime(s, "%Y-%m-%d %H:%M:%S"))
    except (ValueError, OverflowError):
        return 0
