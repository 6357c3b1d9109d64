"""How fast the node's destinations fill, from the disk samples of the history. Pure functions.

Every pass ends with one :class:`ethoscope_rsync.state.history.DiskSample` (free and total bytes of each
destination's file system, and the bytes our copies take there). The history keeps one sample every
two hours over the last week (:func:`add_sample`). The growth of a file system is the faster of

* the growth of our copies on it (every destination on that file system together), and
* the shrinking of its free space (which also sees other writers),

each estimated as the median of the rates between every two samples at least an hour apart
(Theil-Sen: a one-off jump, such as a new device's first full copy, moves it little). Days to full
are the free bytes divided by that growth; a file system that does not grow is never full.
"""
from __future__ import annotations

import dataclasses

from ethoscope_rsync.state.history import DiskSample
from ethoscope_rsync.state.model import DAY

SPACING = 7200.0          # one kept sample every two hours (plus the newest) ...
KEPT = 7 * DAY            # ... over the last week: at most 86 samples
MIN_SPAN = 6 * 3600.0     # no estimate from samples spanning less than this
MIN_PAIR = SPACING / 2    # pairs of samples closer than this are too noisy to count
MAX_POINTS = 48           # samples used for the estimate, evenly picked (pairs grow as the square)


def add_sample(samples: list, sample: DiskSample) -> list:
    """`samples` (oldest first) with `sample` added: the newest always, older ones thinned to one
    per SPACING and kept for KEPT seconds; samples after a clock step back are dropped."""
    kept = [s for s in samples if s.at < sample.at]
    if len(kept) >= 2 and kept[-1].at - kept[-2].at < SPACING:
        kept.pop()          # the previous newest, too close to the one kept before it
    kept.append(sample)
    return [s for s in kept if sample.at - s.at <= KEPT]


def _spread(points: list, count: int) -> list:
    if len(points) <= count:
        return points
    step = (len(points) - 1) / (count - 1)
    return [points[round(i * step)] for i in range(count)]


def rate_per_day(points: list) -> float | None:
    """Median rate (units per day) of (time, value) points, oldest first; None without enough data."""
    if len(points) < 2 or points[-1][0] - points[0][0] < MIN_SPAN:
        return None
    points = _spread(points, MAX_POINTS)
    slopes = sorted((v2 - v1) / (t2 - t1) for i, (t1, v1) in enumerate(points)
                    for t2, v2 in points[i + 1:] if t2 - t1 >= MIN_PAIR)
    if not slopes:
        return None
    middle = len(slopes) // 2
    slope = slopes[middle] if len(slopes) % 2 else (slopes[middle - 1] + slopes[middle]) / 2
    return slope * DAY


def days_to_full(free: int, per_day: float | None) -> float | None:
    """Days until `free` bytes are used at `per_day` bytes a day; None when it does not grow."""
    if per_day is None or per_day <= 0:
        return None
    return max(0.0, free) / per_day


def file_systems(usage: dict) -> dict:
    """Destinations grouped by file system: fs -> kinds, in KINDS order."""
    groups: dict = {}
    for kind, u in usage.items():
        groups.setdefault(u.fs, []).append(kind)
    return {fs: tuple(kinds) for fs, kinds in groups.items()}


def growth(samples: list, kinds: tuple) -> float | None:
    """Bytes a day the file system holding `kinds` (one file system) fills, from `samples`."""
    fs = samples[-1].usage[kinds[0]].fs
    series = [(s.at, [s.usage.get(k) for k in kinds]) for s in samples]
    series = [(t, us) for t, us in series if all(u is not None and u.fs == fs for u in us)]
    ours = rate_per_day([(t, sum(u.used for u in us)) for t, us in series])
    shrink = rate_per_day([(t, -us[0].free) for t, us in series])
    rates = [r for r in (ours, shrink) if r is not None]
    return max(rates) if rates else None


def with_growth(samples: list, sample: DiskSample) -> DiskSample:
    """`sample` with each destination's `growth` estimated from `samples` (older ones) and itself."""
    history = [s for s in samples if s.at < sample.at] + [sample]
    usage = dict(sample.usage)
    for kinds in file_systems(sample.usage).values():
        rate = growth(history, kinds)
        for kind in kinds:
            usage[kind] = dataclasses.replace(usage[kind], growth=rate)
    return DiskSample(sample.at, usage)


@dataclasses.dataclass(frozen=True)
class Forecast:
    """One destination at the newest sample, with its file system's growth."""
    kind: str
    at: float
    free: int
    total: int
    used: int
    raw: int
    per_day: float | None          # bytes a day its file system fills
    days: float | None             # until full; None: not filling (or not known yet)
    shared: tuple                  # the other destinations on the same file system

    def short(self, horizon_days: float) -> bool:
        """Full within the horizon (0: never warn)."""
        return horizon_days > 0 and self.days is not None and self.days < horizon_days


def forecasts(samples: list) -> dict:
    """kind -> Forecast at the newest sample ({} without samples)."""
    if not samples:
        return {}
    latest = samples[-1]
    groups = file_systems(latest.usage)
    out = {}
    for kind, u in latest.usage.items():
        out[kind] = Forecast(kind, latest.at, u.free, u.total, u.used, u.raw, u.growth,
                             days_to_full(u.free, u.growth), tuple(k for k in groups[u.fs] if k != kind))
    return out


def usage_series(samples: list, kinds: tuple, points: int = 0) -> list:
    """(time, bytes used by `kinds` together) of the samples where they are all on one file system;
    with `points`, of about that many samples evenly picked (the newest always)."""
    if points and len(samples) > points:
        step = -(-len(samples) // points)           # rounded up
        samples = samples[:-1:step] + samples[-1:]
    out = []
    for s in samples:
        usage = [s.usage.get(k) for k in kinds]
        if None not in usage and all(u.fs == usage[0].fs for u in usage):
            out.append((s.at, sum(u.used for u in usage)))
    return out
