"""Human-readable sizes, rates, times and ages for the web pages and the terminal (never stored)."""
from __future__ import annotations

import math
import time


def _number(value) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return 0.0
    return number if math.isfinite(number) else 0.0


def human_size(size) -> str:
    """Bytes as the upstream tool shows them: ``108 B``, ``104.0 KB``, ``169.3 MB``."""
    size = _number(size)
    if size < 1024:
        return "%d B" % size
    for unit in ("KB", "MB", "GB", "TB"):
        size /= 1024.0
        if size < 1024 or unit == "TB":
            break
    return "%.1f %s" % (size, unit)


def format_time(epoch) -> str:
    """Epoch → ``YYYY-MM-DD HH:MM:SS`` local time; ``""`` for 0, missing or invalid."""
    moment = _number(epoch)
    if moment <= 0:
        return ""
    try:
        return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(moment))
    except (OverflowError, OSError, ValueError):
        return ""


def format_age(seconds) -> str:
    """A short age: ``42 s``, ``5 min``, ``3.2 h``, ``4.0 d``."""
    seconds = max(0.0, _number(seconds))
    if seconds < 90:
        return "%d s" % seconds
    if seconds < 90 * 60:
        return "%d min" % (seconds // 60)
    if seconds < 48 * 3600:
        return "%.1f h" % (seconds / 3600)
    return "%.1f d" % (seconds / 86400)


def human_rate(bytes_per_second) -> str:
    """A transfer rate as the upstream tool shows it: ``4.55MB/s``, ``7.53kB/s``."""
    rate = max(0.0, _number(bytes_per_second))
    for unit in ("B", "kB", "MB", "GB"):
        if rate < 1024 or unit == "GB":
            return "%.2f%s/s" % (rate, unit)
        rate /= 1024.0
    return "%.2fGB/s" % rate


def format_days(days) -> str:
    """Days until a destination is full: ``about 47 days``, ``about 1 day``, ``less than a day``."""
    days = max(0.0, _number(days))
    if days < 1:
        return "less than a day"
    return "about %d day%s" % (round(days), "" if round(days) == 1 else "s")
