"""The one merge of the two documents every rendering starts from: each device's run in the
current pass (``status.json``) beside its history (``history.json``), and whether it is stale.

Pure: the inputs are the parsed documents (dicts, or ``None`` when a file is missing) and are not
modified; ``now`` is an epoch float, ``stale_after`` seconds.
"""
from __future__ import annotations

import dataclasses

from ethoscope_rsync.state.model import COMPLETED, DeviceRun, Status, is_stale, lag
from ethoscope_rsync.state.history import DeviceHistory, History


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
    def cipher(self) -> str:
        """The ssh cipher offered first to the device in the current pass ("ssh default": ssh's own
        choice; "": not in the current pass)."""
        if not self.run:
            return ""
        return self.run.ciphers.split(",", 1)[0] or "ssh default"

    @property
    def files_copied(self) -> int:
        return sum(t.files_received for t in self.run.transfers.values()) if self.run else 0


@dataclasses.dataclass(frozen=True)
class View:
    status: Status
    history: History
    devices: dict                     # key -> DeviceView, sorted by name
    has_status: bool


def _without_files(status, history) -> tuple:
    """Shallow copies of the documents without their per-file records (the devices' inventories, the
    files each transfer received): most of what reading them costs, and a page never shows them."""
    devices = history.get("devices") if isinstance(history, dict) else None
    if isinstance(devices, dict):
        history = dict(history, devices={k: dict(d, inventory=None) if isinstance(d, dict) else d
                                         for k, d in devices.items()})
    runs = status.get("devices") if isinstance(status, dict) else None
    if isinstance(runs, dict):
        status = dict(status, devices={
            k: dict(d, transfers={kind: dict(t, files=None) if isinstance(t, dict) else t
                                  for kind, t in d["transfers"].items()})
            if isinstance(d, dict) and isinstance(d.get("transfers"), dict) else d for k, d in runs.items()})
    return status, history


def view(status, history, now: float, stale_after: float, files: bool = True) -> View:
    """The model read from the two documents, with every device's run and history side by side.
    `files` False leaves out the per-file records (inventories, files received) for a faster read."""
    has_status = status is not None
    if not files:
        status, history = _without_files(status, history)
    current, past = Status.from_json(status), History.from_json(history)
    devices = {}
    for key in set(current.devices) | set(past.devices):
        entry = past.devices.get(key) or DeviceHistory()
        devices[key] = DeviceView(key, current.devices.get(key), entry,
                                  is_stale(entry.last_success, now, stale_after))
    ordered = dict(sorted(devices.items(), key=lambda item: (item[1].name, item[0])))
    return View(current, past, ordered, has_status and current.run.pid != 0)


def worst_lag(v: View, now: float) -> tuple:
    """The lab's worst data age: (seconds, device name), of the devices copied whole at least once;
    (None, "") when none was."""
    lags = [(lag(d.past.protected_up_to, now), d.name or d.key) for d in v.devices.values()]
    known = [item for item in lags if item[0] is not None]
    return max(known) if known else (None, "")


def last_backup_time(v: View) -> float:
    return v.history.last_backup
