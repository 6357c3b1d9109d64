"""The status store: one writer, atomic rewrites of status.json, history that survives reboots.

Device jobs never touch this state: they send :class:`Event` objects through a queue and the
pass's main thread (the only writer) applies them here and rewrites the file at most once per
``interval`` seconds. Readers (the web service, ``ethoscope-backup status``) only ever see a
complete file because it is replaced with ``rename(2)`` after ``fsync``.
"""
from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import tempfile
import time
from pathlib import Path

from ethoscope_rsync.units import format_time, human_size

SCHEMA = 1
MAX_FILES_LISTED = 500     # per device and kind; the newest are kept


def write_json_atomic(path: Path, data: dict) -> None:
    """Write temp file in the same directory, fsync, rename over `path`, fsync the directory."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(data, handle, separators=(",", ":"), sort_keys=True)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(temp, 0o644)
        os.replace(temp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temp)
        raise
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


def read_json(path: Path) -> dict | None:
    """A JSON object from `path`, or None when missing or unreadable."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


@dataclasses.dataclass(frozen=True)
class Event:
    """Something a device job reports. kind: queued/start/progress/file/transfer/database/done."""
    kind: str
    key: str
    data: dict


def _empty_kind(kind: str, directory: str) -> dict:
    return {"type": kind, "directory": directory, "local_files": 0, "disk_usage_bytes": 0,
            "disk_usage_human": human_size(0), "detailed_files": {}}


def _settled(device: dict) -> dict:
    """A device of an earlier pass that never finished (killed pass): shown failed, not running."""
    if device.get("status") in ("queued", "running") or device.get("processing"):
        message = "the previous pass ended before this device finished"
        device = dict(device, status="error", processing=False, last_error=message)
        device["progress"] = dict(device.get("progress") or {}, status="error", message=message)
    return device


class StatusBook:
    """The pass's status document, owned by the single writer thread."""

    def __init__(self, path: Path, history: dict, previous: dict | None, *, pid: int,
                 what: str, interval: float, directories: dict):
        self.path, self.interval, self.what, self.directories = path, interval, what, directories
        self.history = history
        self._written = 0.0
        old_devices = (previous or {}).get("devices", {}) if isinstance(previous, dict) else {}
        self.doc = {
            "schema": SCHEMA, "generated": time.time(), "status": "running",
            "last_backup": format_time(history.get("last_backup", 0)),
            "run": {"pid": pid, "started": time.time(), "ended": 0, "outcome": "running",
                    "devices_total": 0, "devices_done": 0, "devices_failed": 0,
                    "bytes_transferred": 0, "files_transferred": 0, "message": "discovering devices"},
            "devices": {k: _settled(v) for k, v in old_devices.items() if isinstance(v, dict)},
            "disk_usage_summary": {},
        }
        self._summarise()

    # ---- events -------------------------------------------------------------------------
    def add_device(self, key: str, name: str, address: str, machine_id: str) -> None:
        old = self.doc["devices"].get(key, {})
        past = self.history.get("devices", {}).get(key, {})
        synced = old.get("synced") if isinstance(old.get("synced"), dict) else {}
        self.doc["devices"][key] = {
            "id": machine_id, "name": name, "ip": address, "status": "queued",
            "started": 0, "ended": 0, "processing": False, "count": int(old.get("count", 0)),
            "progress": {"backup_status": 0.0, "status": "queued", "message": "waiting for a free job",
                         "backup_method": "rsync", "backup_type": self.what, "backup_size": 0,
                         "completion_time": 0, "time_since_backup": 0.0, "bytes_transferred": 0,
                         "rate_bps": "", "current_file": "", "kind": ""},
            "synced": {kind: synced.get(kind) or _empty_kind(kind, str(self.directories[kind]))
                       for kind in ("results", "videos")},
            "transfer_details": {},
            "last_success": past.get("last_success", 0), "last_error": past.get("last_error", ""),
            "last_error_time": past.get("last_error_time", 0), "attempts": 0,
            "databases": old.get("databases", {}) if isinstance(old.get("databases"), dict) else {},
        }
        self.doc["run"]["devices_total"] += 1

    def apply(self, event: Event) -> None:
        device = self.doc["devices"].get(event.key)
        if device is None:
            return
        handler = getattr(self, "_on_" + event.kind)
        handler(device, **event.data)

    def _on_start(self, device, attempt: int, started: float) -> None:
        device.update(status="running", processing=True, started=int(started), ended=0,
                      attempts=attempt)
        device["count"] += 1 if attempt == 1 else 0
        device["progress"].update(status="running", message=f"attempt {attempt}", backup_status=0.0)
        if attempt == 1:
            device["transfer_details"] = {}

    def _on_progress(self, device, kind: str, percent: int, transferred: int, rate: str,
                     current: str) -> None:
        share = self.doc_kinds()
        index = share.index(kind) if kind in share else 0
        overall = (index * 100.0 + percent) / len(share)
        device["progress"].update(backup_status=round(overall, 1), bytes_transferred=transferred,
                                  rate_bps=rate, current_file=current, kind=kind,
                                  message=f"copying {kind}")

    def doc_kinds(self) -> tuple:
        return {"unified": ("results", "videos"), "results": ("results",),
                "videos": ("videos",)}[self.what]

    def _on_file(self, device, kind: str, path: str, size: int, transferred: int, start: float,
                 end: float) -> None:
        details = device["transfer_details"].setdefault(
            kind, {"files": {}, "total_bytes": 0, "total_files": 0, "completion_time": 0})
        elapsed = max(end - start, 1e-6)
        record = {"path": path, "relative_path": path, "size_bytes": size, "size_human": human_size(size),
                  "status": "completed", "transfer_speed": human_size(transferred / elapsed).replace(" ", "") + "/s",
                  "transfer_start": start, "transfer_end": end, "bytes_transferred": transferred}
        files = details["files"]
        files[os.path.basename(path)] = record
        while len(files) > MAX_FILES_LISTED:
            files.pop(next(iter(files)))
        details["total_bytes"] += size
        details["total_files"] += 1
        self.doc["run"]["bytes_transferred"] += transferred
        self.doc["run"]["files_transferred"] += 1

    def _on_transfer(self, device, kind: str, files: int, total_size: int, exit_code: int,
                     ok: bool, message: str, part: str = "tree") -> None:
        details = device["transfer_details"].setdefault(
            kind, {"files": {}, "total_bytes": 0, "total_files": 0, "completion_time": 0})
        details.update(completion_time=time.time(), rsync_exit_code=exit_code, ok=ok, message=message)
        if ok:
            synced = device["synced"].setdefault(kind, _empty_kind(kind, str(self.directories[kind])))
            if part == "databases":    # second half of the results tree (see jobs._results)
                files += synced.get("local_files", 0)
                total_size += synced.get("disk_usage_bytes", 0)
            synced.update(local_files=files, disk_usage_bytes=total_size,
                          disk_usage_human=human_size(total_size),
                          directory=str(self.directories[kind]))
            if details["files"]:
                synced["detailed_files"] = dict(details["files"])

    def _on_database(self, device, path: str, verdict: str, rows: int, message: str) -> None:
        device["databases"][path] = {"verdict": verdict, "rows": rows, "checked": time.time(),
                                     "message": message}

    def _on_done(self, device, ok: bool, message: str, finished: float) -> None:
        device.update(status="completed" if ok else "error", processing=False, ended=int(finished))
        device["progress"].update(status="completed" if ok else "error", message=message,
                                  completion_time=int(finished), current_file="",
                                  backup_status=100.0 if ok else device["progress"]["backup_status"])
        device["synced"]["transfer_details"] = device["transfer_details"]
        if ok:
            device.update(last_success=finished)
        else:
            device.update(last_error=message, last_error_time=finished)
        run = self.doc["run"]
        run["devices_done"] += 1
        run["devices_failed"] += 0 if ok else 1
        self._remember(device, ok, message, finished)
        self._summarise()

    # ---- history ------------------------------------------------------------------------
    def _remember(self, device: dict, ok: bool, message: str, finished: float) -> None:
        key = device["id"] or device["name"]
        entry = self.history.setdefault("devices", {}).setdefault(key, {})
        entry.update(name=device["name"], last_outcome="completed" if ok else "error")
        if ok:
            entry.update(last_success=finished, last_bytes=sum(
                d.get("total_bytes", 0) for d in device["transfer_details"].values()))
        else:
            entry.update(last_error=message, last_error_time=finished)

    def _summarise(self) -> None:
        summary = {}
        for kind in ("results", "videos"):
            files = sum(d.get("synced", {}).get(kind, {}).get("local_files", 0)
                        for d in self.doc["devices"].values())
            size = sum(d.get("synced", {}).get(kind, {}).get("disk_usage_bytes", 0)
                       for d in self.doc["devices"].values())
            summary[kind] = {"total_files": files, "total_size_bytes": size,
                             "total_size_human": human_size(size)}
        files = summary["results"]["total_files"] + summary["videos"]["total_files"]
        size = summary["results"]["total_size_bytes"] + summary["videos"]["total_size_bytes"]
        summary["combined"] = {"total_files": files, "total_size_bytes": size,
                               "total_size_human": human_size(size)}
        self.doc["disk_usage_summary"] = summary

    # ---- writing ------------------------------------------------------------------------
    def set_message(self, message: str) -> None:
        self.doc["run"]["message"] = message

    def finish(self, outcome: str, message: str, success: bool) -> None:
        now = time.time()
        run = self.doc["run"]
        run.update(ended=now, outcome=outcome, message=message)
        self.doc["status"] = "idle"
        if success:
            self.history["last_backup"] = now
            self.doc["last_backup"] = format_time(now)

    def maybe_write(self, now: float | None = None) -> bool:
        now = time.monotonic() if now is None else now
        if now - self._written < self.interval:
            return False
        self.write()
        self._written = now
        return True

    def write(self) -> None:
        self.doc["generated"] = time.time()
        write_json_atomic(self.path, self.doc)

    def totals(self) -> tuple:
        run = self.doc["run"]
        return run["devices_done"], run["devices_total"], run["devices_failed"], run["bytes_transferred"]


def load_history(path: Path) -> dict:
    data = read_json(path) or {}
    return {"schema": SCHEMA, "last_backup": float(data.get("last_backup") or 0),
            "devices": data.get("devices") if isinstance(data.get("devices"), dict) else {}}


def save_history(path: Path, history: dict) -> None:
    write_json_atomic(path, history)
