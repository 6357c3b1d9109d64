"""Each device on its own clock: which devices are due for their next copy. Pure.

A device is due once ``interval`` seconds have passed since its own last copy ended (successful or
not), whatever the other devices are doing; a device never copied is due at once. Of the devices
due, the longest overdue goes first, so that with fewer job slots than devices nobody is starved.
The loop that acts on it is :mod:`ethoscope_rsync.backup.continuous`.
"""
from __future__ import annotations

import dataclasses

from ethoscope_rsync.state.history import last_seen

LINGER = 60.0          # seconds: a scheduled pass waits this long for a device coming due before it exits
REDISCOVER = 300.0     # seconds: a long scheduled pass asks again which devices there are this often
CHECKPOINT = 30.0      # seconds: a long scheduled pass saves the history at least this often after a change


@dataclasses.dataclass(frozen=True)
class Schedule:
    """How a scheduled pass runs: each device's `interval`; it ends when nothing runs and no device is
    due within `linger` seconds (the timer starts the next one)."""
    interval: float
    linger: float = LINGER
    rediscover: float = REDISCOVER
    checkpoint: float = CHECKPOINT

    @classmethod
    def every(cls, interval: float) -> "Schedule":
        """A device's next copy `interval` seconds after its last; a pass lingers for at most half of
        that, so that with a short interval and nothing else running it still ends after a round."""
        return cls(interval, linger=min(LINGER, interval / 2))


def last_end(entry) -> float:
    """When a device's last copy ended (a DeviceHistory, or None: never copied -> 0)."""
    return last_seen(entry) if entry is not None else 0.0


def due_at(ended: float, interval: float) -> float:
    """When a device whose last copy ended at `ended` (0: never) is due again."""
    return ended + interval if ended > 0 else 0.0


def due(ends: dict, running, now: float, interval: float) -> list:
    """The keys of `ends` (key -> last copy end) that are due at `now` and not `running`, longest
    overdue first (ties by key, for a stable order)."""
    ready = [(due_at(ended, interval), key) for key, ended in ends.items()
             if key not in running and due_at(ended, interval) <= now]
    return [key for _, key in sorted(ready)]


def next_due(ends: dict, running, interval: float) -> float | None:
    """The earliest moment a device not `running` comes due (None: every device is running)."""
    moments = [due_at(ended, interval) for key, ended in ends.items() if key not in running]
    return min(moments) if moments else None
