"""Inline SVG for the status page: a device's last passes as a strip, a destination's usage as a
chart with its forecast. Pure functions returning markup; no script, no external asset.

The strip is drawn on every page view for every device, so it is built from precomputed path
fragments (one ``<path>`` per outcome), not one element per pass.
"""
from __future__ import annotations

import html

from ethoscope_rsync.render.humanize import format_time, human_size
from ethoscope_rsync.state.model import ERROR, PASSES_KEPT
from ethoscope_rsync.state.model import DAY

SLOT, BAR, HEIGHT = 4, 3, 16              # strip: px per pass, bar width, height
LEVELS = 13                               # bar heights 4..16 px, by log2 of the bytes copied
_SMALL = 10                               # 1 KiB and less: the lowest bar
_BIG = 37                                 # 128 GiB and more: the highest


def _bar(slot: int, height: int) -> str:
    return "M%d %dh%dv%dh-%dz" % (slot * SLOT, HEIGHT - height, BAR, height, BAR)


_COPIED = [[_bar(slot, 4 + level) for level in range(LEVELS)] for slot in range(PASSES_KEPT)]
_FAILED = [_bar(slot, HEIGHT) for slot in range(PASSES_KEPT)]
_NOTHING = [_bar(slot, 2) for slot in range(PASSES_KEPT)]


# bar level by the bit length of the bytes copied: 1 KiB and less the lowest, 128 GiB and more the highest
_LEVEL = [0] * (_SMALL + 1) + [min(LEVELS - 1, (bits - _SMALL) * (LEVELS - 1) // (_BIG - _SMALL))
                               for bits in range(_SMALL + 1, 65)]
_STRIP = ('<svg class="strip" viewBox="0 0 %d %d" width="%d" height="%d" role="img"><title>'
          % (PASSES_KEPT * SLOT, HEIGHT, PASSES_KEPT * SLOT, HEIGHT))


def level(copied: int) -> int:
    """Bar level 0..LEVELS-1 of a pass that copied `copied` bytes (log scale, 1 KiB to 128 GiB)."""
    bits = copied.bit_length()
    return _LEVEL[bits] if bits < 65 else LEVELS - 1


def strip(passes: list) -> str:
    """The last PASSES_KEPT passes (PassSummary, oldest first), right-aligned: green bars as high as
    the bytes copied, red full bars for failures, grey stubs when there was nothing to copy."""
    passes = passes[-PASSES_KEPT:]
    slot = PASSES_KEPT - len(passes)
    copied, failed, nothing = [], [], []
    for p in passes:
        size = p.bytes
        if p.outcome == ERROR:
            failed.append(_FAILED[slot])
        elif size > 0:
            copied.append(_COPIED[slot][level(size)])
        else:
            nothing.append(_NOTHING[slot])
        slot += 1
    return ('%slast %d passes: %d copied, %d with nothing new, %d failed</title><path class="p-ok" d="%s"/>'
            '<path class="p-none" d="%s"/><path class="p-err" d="%s"/></svg>'
            % (_STRIP, len(passes), len(copied), len(nothing), len(failed),
               "".join(copied), "".join(nothing), "".join(failed)))


# ---------------------------------------------------------------- usage chart

W, H, LEFT, TOP, BOTTOM = 480, 150, 60, 12, 20     # chart size and margins (SVG units)
MAX_POINTS = 40                                    # chart points (samples are thinned to about this)


def _e(value) -> str:
    return html.escape(str(value), quote=True)


def usage_chart(series: list, capacity: int, per_day: float | None, horizon_days: float,
                label: str) -> str:
    """Bytes used over time (`series`: (time, bytes), oldest first) against the file system's
    `capacity` (ours plus the free bytes), with a dashed forecast at `per_day` bytes a day over the
    next `horizon_days` days (at least one) or until full."""
    if not series:
        return ""
    t0, (t1, last) = series[0][0], series[-1]
    ahead = max(1.0, horizon_days) * DAY
    t_end = t1 + ahead
    forecast_end = (t_end, last + (per_day or 0.0) * ahead / DAY)
    if per_day and per_day > 0 and last + per_day * ahead / DAY > capacity:
        forecast_end = (t1 + max(0.0, capacity - last) / per_day * DAY, max(capacity, last))
    top = max(capacity, max(v for _, v in series), forecast_end[1], 1) * 1.05
    span = max(t_end - t0, 1.0)
    plot_w, plot_h = W - LEFT - 8, H - TOP - BOTTOM

    def x(t):
        return LEFT + (t - t0) / span * plot_w

    def y(v):
        return TOP + plot_h - v / top * plot_h

    line = " ".join("%.1f,%.1f" % (x(t), y(v)) for t, v in series)
    parts = ['<svg class="chart" viewBox="0 0 %d %d" role="img" aria-label="%s">' % (W, H, _e(label)),
             "<title>%s</title>" % _e(label),
             '<rect class="c-bg" x="%d" y="%d" width="%d" height="%d"/>' % (LEFT, TOP, plot_w, plot_h),
             '<line class="c-cap" x1="%d" x2="%d" y1="%.1f" y2="%.1f"/>' % (LEFT, W - 8, y(capacity), y(capacity)),
             '<text class="c-txt" x="%d" y="%.1f">full %s</text>' % (LEFT + 4, y(capacity) - 3,
                                                                     _e(human_size(capacity))),
             '<polyline class="c-used" points="%s"/>' % line]
    if per_day is not None:
        parts.append('<line class="c-fc" x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f"/>'
                     % (x(t1), y(last), x(forecast_end[0]), y(forecast_end[1])))
    parts.append('<text class="c-txt" x="%d" y="%.1f" text-anchor="end">%s</text>'
                 % (LEFT - 4, y(last) + 4, _e(human_size(last))))
    labels = [(t1, "middle", "last pass"), (t_end, "end", format_time(t_end)[:10])]
    if x(t1) - x(t0) > 110:
        labels.append((t0, "start", format_time(t0)[:10]))
    for t, anchor, text in labels:
        parts.append('<text class="c-txt" x="%.1f" y="%d" text-anchor="%s">%s</text>' % (x(t), H - 6, anchor, _e(text)))
    parts.append("</svg>")
    return "".join(parts)
