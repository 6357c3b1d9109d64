"""The node's destination file systems: free space before a device starts, and what to say when full."""
from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

from ethoscope_rsync.humanize import human_size


def nearest_existing(path: Path) -> Path:
    """`path`, or its closest existing parent (a destination may not exist before the first pass)."""
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def free_bytes(path: Path) -> int:
    """Bytes an unprivileged user may still write on `path`'s file system. Raises OSError."""
    stats = os.statvfs(nearest_existing(path))
    return stats.f_bavail * stats.f_frsize


def free_space_problem(path: Path, reserve: int) -> str:
    """'' when `path`'s filesystem keeps `reserve` bytes free, else an operator message."""
    try:
        free = free_bytes(path)
    except OSError as error:
        return f"cannot check free space of {path}: {error.strerror}"
    if free >= reserve:
        return ""
    return (f"not enough free space on the filesystem of {path}: {human_size(free)} free, "
            f"{human_size(reserve)} must stay free ([transfer] min_free)")


def disk_full_message(path: Path) -> str:
    """What to tell the operator when rsync hit ENOSPC on the node."""
    try:
        free = human_size(free_bytes(path))
    except OSError:
        free = "unknown"
    return (f"destination full: no space left on the filesystem of {path} ({free} free); "
            f"interrupted files stay in .ethoscope-backup-partial folders, nothing was replaced")


def prune_replaced(folder: Path, keep_days: float, now: float) -> list:
    """Remove the DATE folders of old versions kept by --safe (``folder``/DATE, DATE as the pass
    stamps it) older than `keep_days`. Returns the names removed. Raises OSError."""
    if keep_days <= 0 or not folder.is_dir():
        return []
    removed = []
    for name in sorted(os.listdir(folder)):
        try:
            stamp = time.mktime(time.strptime(name, "%Y-%m-%d_%H-%M-%S"))
        except ValueError:
            continue              # not ours: left alone
        if now - stamp > keep_days * 86400:
            shutil.rmtree(folder / name)
            removed.append(name)
    return removed
