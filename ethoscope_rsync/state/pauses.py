"""Devices the admin paused (``ethoscope-backup pause 004 --reason ... [--until DATE]``): ``paused.json``
in the state folder, written only by the pause and resume commands.

A paused device is not copied by passes, raises no failing or stale alert, is shown paused (with the
reason) on the page, in ``status`` and in ``/metrics``, keeps its history (it is never retired) and
stays in ``verify``. A pause ``until`` a time ends by itself then. Entries are keyed by the device's
name (``ETHOSCOPE_004``), with its machine id when known; a device matches by either.
Readers attach the document to the history's (``attach``) as they do the second copy's.
"""
from __future__ import annotations

import dataclasses

from ethoscope_rsync.state.health import Pause
from ethoscope_rsync.state.model import mapping, number, text

MAX_PAUSED = 1000          # entries read (a lab has 10-100 devices)
REASON = 200               # characters of a reason kept


@dataclasses.dataclass(frozen=True)
class Paused:
    name: str              # ETHOSCOPE_004
    id: str                # its machine id ("" when not known)
    pause: Pause

    def to_json(self) -> dict:
        return {"id": self.id, "reason": self.pause.reason, "since": self.pause.since, "until": self.pause.until}


def from_json(doc) -> dict:
    """paused.json -> {name: Paused}; anything malformed is dropped."""
    out = {}
    for name, entry in list(mapping(mapping(doc).get("devices")).items())[:MAX_PAUSED]:
        entry = mapping(entry)
        if isinstance(name, str) and name:
            out[name] = Paused(name, text(entry.get("id")),
                               Pause(text(entry.get("reason"))[:REASON], number(entry.get("since")),
                                     number(entry.get("until"))))
    return out


def to_json(paused: dict) -> dict:
    return {"schema": 1, "devices": {name: entry.to_json() for name, entry in sorted(paused.items())}}


def find(paused: dict, key: str, name: str) -> Paused | None:
    """The entry of the device with this key (machine id or name) and name, if paused."""
    entry = paused.get(name) if name else None
    if entry is not None:
        return entry
    return next((e for e in paused.values() if e.id and e.id in (key, name)), None)


def active(paused: dict, devices: dict, now: float) -> dict:
    """{key: Pause} of `devices` (key -> anything with a name) paused at `now`."""
    if not paused:
        return {}
    out = {}
    for key, device in devices.items():
        entry = find(paused, key, getattr(device, "name", "") or "")
        if entry is not None and entry.pause.active(now):
            out[key] = entry.pause
    return out


def attach(history, doc):
    """The history document with the pauses (paused.json's document, or None) attached for readers."""
    if doc is None:
        return history
    return dict(history if isinstance(history, dict) else {}, paused=doc)


def of_history(history) -> dict:
    """The pauses attached to a history document ({} when none)."""
    return from_json(history.get("paused")) if isinstance(history, dict) else {}


def load(path) -> dict:
    """paused.json as {name: Paused} ({} when missing or unreadable)."""
    from ethoscope_rsync.state.store import read_json
    return from_json(read_json(path))


def not_paused(devices, path, now: float) -> tuple:
    """The pass's devices (config.devices.Device) without those paused at `now`, each left out said once."""
    from ethoscope_rsync.system.logs import log
    paused = load(path)
    if not paused:
        return tuple(devices)
    kept = []
    for device in devices:
        entry = find(paused, device.id or device.name, device.name)
        if entry is not None and entry.pause.active(now):
            log.info("%s is paused%s%s: not copied", device.name,
                     " (%s)" % entry.pause.reason if entry.pause.reason else "",
                     " until %s" % _when(entry.pause.until) if entry.pause.until else "",
                     extra={"DEVICE_NAME": device.name, "DEVICE_ID": device.id})
            continue
        kept.append(device)
    return tuple(kept)


def keys(path, now: float) -> set:
    """Names and machine ids of the devices paused at `now` (kept in the history: never retired)."""
    return {k for e in load(path).values() if e.pause.active(now) for k in (e.name, e.id) if k}


def _when(moment: float) -> str:
    import time
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(moment))
