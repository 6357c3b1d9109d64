"""``verify`` shared fairly by the devices: each device gets an equal share of what is left of the run's
``[verify] time_limit`` (a device done early leaves its rest to the others), and a device stopped by its
share goes on next time after the last file it checked (its cursor), then wraps around. So a device
whose crafted databases each take the whole deadline costs the others nothing, and every file of every
device is checked in turn, however big the archive. Pure."""
from __future__ import annotations

MIN_CHECK = 1.0       # seconds: the least a file is given


def resume(items, cursor: str) -> list:
    """A device's items (each with a ``shown`` path) in the order this run checks them: those after
    `cursor`, then from the start up to it (all in path order when there is no cursor)."""
    ordered = sorted(items, key=lambda item: item.shown)
    if not cursor:
        return ordered
    return [i for i in ordered if i.shown > cursor] + [i for i in ordered if i.shown <= cursor]


def share(left: float, devices_left: int) -> float:
    """The seconds a device gets of the `left` seconds of the run, with `devices_left` (itself
    included) still to check."""
    return max(0.0, left) / max(1, devices_left)


def allowed(deadline: float, until: float, now: float) -> float | None:
    """The seconds one file may take: the file deadline, within the device's share (ending at
    `until`); None when the share is spent."""
    left = until - now
    if left <= 0:
        return None
    return min(deadline, max(MIN_CHECK, left))
