"""Is everything safe? Each device judged from the status and the history, and the whole node's verdict.

Pure: from a :class:`~ethoscope_rsync.state.views.View`, the time, ``[status] overdue_after`` and the
paused devices. A device is

* **failing** when its latest job ended in an error (since the first failure of that streak);
* **stale** when it has had no good copy for ``[status] stale_after`` (never green, whatever its last
  job said);
* **paused** when the admin paused it (``ethoscope-backup pause``): neither a problem nor counted safe;
* **safe** otherwise (running and queued devices included).

The node is **overdue** when no pass has ended for ``overdue_after`` seconds while none runs, or the
running pass has written nothing for that long (stuck); the same rule holds under the timer, in
``daemon`` mode and with passes run by hand. The verdict's level is ``ok``, ``problem`` (any device
failing or stale, a pass failed for no device's fault, or overdue) or ``unknown`` (nothing to judge:
no pass has ever run). The words are :mod:`ethoscope_rsync.render.verdict`'s.
"""
from __future__ import annotations

import dataclasses
import math

from ethoscope_rsync.state.history import last_seen
from ethoscope_rsync.state.model import ERROR

SAFE, FAILING, STALE, PAUSED = "safe", "failing", "stale", "paused"
OK, PROBLEM, UNKNOWN = "ok", "problem", "unknown"
_RANK = {FAILING: 0, STALE: 1, SAFE: 2, PAUSED: 3}
FAILED_PASSES = ("failed", "interrupted", "waiting for the SSH key")


@dataclasses.dataclass(frozen=True)
class Pause:
    """A device paused by the admin: why, since when, and until when (0: until resumed)."""
    reason: str = ""
    since: float = 0.0
    until: float = 0.0

    def active(self, now: float) -> bool:
        return self.until <= 0 or now < self.until


@dataclasses.dataclass(frozen=True)
class DeviceHealth:
    key: str
    name: str
    judgement: str           # SAFE, FAILING, STALE, PAUSED
    since: float             # failing: the streak's first failure; stale: the last good copy (0: never)
    last_seen: float         # when a job of it last ended (0: never)
    reason: str              # failing: the error; paused: the admin's reason

    @property
    def problem(self) -> bool:
        return self.judgement in (FAILING, STALE)


@dataclasses.dataclass(frozen=True)
class Verdict:
    level: str                      # OK, PROBLEM, UNKNOWN
    devices: tuple                  # DeviceHealth: problems first (failing, stale), then safe, then paused
    last_pass_end: float            # 0: no pass has ended that we know of
    running_since: float            # the running pass's start (0: none runs)
    overdue_for: float              # seconds past overdue_after (0: not overdue)
    failed_pass: str                # the last pass's failure when no device explains it ("": none)

    @property
    def problems(self) -> tuple:
        return tuple(d for d in self.devices if d.problem)

    @property
    def safe(self) -> int:
        return sum(1 for d in self.devices if d.judgement == SAFE)

    @property
    def paused(self) -> int:
        return sum(1 for d in self.devices if d.judgement == PAUSED)

    @property
    def watched(self) -> int:
        """Devices that count (every one but the paused)."""
        return len(self.devices) - self.paused


def failing_since(passes, fallback: float) -> float:
    """The first failure of the streak of failures that ends a device's passes (PassSummary list)."""
    since = fallback
    for summary in reversed(passes):
        if summary.outcome != ERROR:
            break
        since = summary.ended
    return since


def judge_device(d, now: float, pause: Pause | None) -> DeviceHealth:
    """One DeviceView judged (see the module's docstring)."""
    past, seen = d.past, last_seen(d.past)
    if pause is not None and pause.active(now):
        return DeviceHealth(d.key, d.name, PAUSED, pause.since, seen, pause.reason)
    failed = d.run.state == ERROR if d.run else past.last_outcome == ERROR
    if failed:
        error = (d.run.error if d.run else "") or past.last_error or "failed"
        fallback = (d.run.ended if d.run else 0.0) or past.last_error_time
        return DeviceHealth(d.key, d.name, FAILING, failing_since(past.passes, fallback), seen, error)
    if d.stale:
        return DeviceHealth(d.key, d.name, STALE, past.last_success, seen, "")
    return DeviceHealth(d.key, d.name, SAFE, past.last_success, seen, "")


def _last_pass_end(v) -> float:
    if v.has_status and not v.status.run.active:
        return v.status.run.ended or v.status.run.started
    return max([v.history.last_backup] + [last_seen(d.past) for d in v.devices.values()])


def judge(v, now: float, overdue_after: float, paused: dict | None = None) -> Verdict:
    """The verdict on a View. `overdue_after` 0: passes are never overdue; `paused`: key -> Pause."""
    paused = paused or {}
    devices = sorted((judge_device(d, now, paused.get(d.key)) for d in v.devices.values()),
                     key=lambda h: (_RANK[h.judgement], h.name or h.key, h.key))
    run = v.status.run
    running = run.started if v.has_status and run.active else 0.0
    last_end = _last_pass_end(v)
    overdue = 0.0
    if overdue_after > 0:
        quiet = (now - (v.status.generated or run.started)) if running else (now - last_end if last_end else 0.0)
        overdue = max(0.0, quiet - overdue_after)
    failed = ""
    if (v.has_status and not running and run.outcome in FAILED_PASSES and not run.devices_failed
            and not any(d.judgement == FAILING for d in devices)):
        failed = run.message or run.outcome
    if not devices and not last_end and not running:
        level = UNKNOWN
    elif overdue > 0 or failed or any(d.problem for d in devices):
        level = PROBLEM
    else:
        level = OK
    return Verdict(level, tuple(devices), last_end, running, overdue, failed)


def next_change(v, now: float, overdue_after: float) -> float:
    """When the verdict turns overdue by itself (files unchanged); inf when it cannot."""
    if overdue_after <= 0:
        return math.inf
    run = v.status.run
    if v.has_status and run.active:
        at = (v.status.generated or run.started) + overdue_after
    else:
        last_end = _last_pass_end(v)
        at = last_end + overdue_after if last_end else math.inf
    return at if at >= now else math.inf
