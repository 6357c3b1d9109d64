"""The node's destination file systems: free space before a device starts, what to say when full,
leftovers that must not pile up (interrupted files the device no longer has, old --safe versions),
and at the end of each pass their usage and growth (see :mod:`ethoscope_rsync.state.forecast`)."""
from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

from ethoscope_rsync.state import forecast
from ethoscope_rsync.render.humanize import format_days, human_size
from ethoscope_rsync.system.logs import log
from ethoscope_rsync.state.model import KINDS
from ethoscope_rsync.state.history import DiskSample, Usage
from ethoscope_rsync.backup.confine import escape
from ethoscope_rsync.backup.rsync import DB_RAW_DIR, PARTIAL_DIR
from ethoscope_rsync.state.model import DAY


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


def remove_orphan_partials(destination: Path, files: dict) -> list:
    """After a complete transfer, interrupted files left in the partial folders of the folders it
    listed are of files the device no longer has (rsync removes the others): remove them. A partial
    folder reached through a link out of its device's folder is left alone (see confine)."""
    removed = []
    for folder in sorted({path.rpartition("/")[0] for path in files}):
        partial = destination / folder / PARTIAL_DIR
        if escape(destination / folder.split("/", 1)[0], partial):
            continue
        try:
            names = os.listdir(partial)
        except OSError:
            continue
        for name in names:
            if f"{folder}/{name}" not in files:
                try:
                    os.unlink(partial / name)
                    removed.append(f"{folder}/{name}")
                except OSError:
                    continue
    return removed


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
        if now - stamp > keep_days * DAY:
            shutil.rmtree(folder / name)
            removed.append(name)
    return removed


# ------------------------------------------------------------------ usage and forecast, once a pass

def tree_bytes(root: Path) -> int:
    """Bytes of the regular files under `root` (symbolic links not followed; 0 if missing).
    Used for the raw database mirror only: it holds databases and their -wal files, nothing else."""
    total, stack = 0, [str(root)]
    while stack:
        try:
            with os.scandir(stack.pop()) as entries:
                for entry in entries:
                    if entry.is_dir(follow_symlinks=False):
                        stack.append(entry.path)
                    elif entry.is_file(follow_symlinks=False):
                        total += entry.stat(follow_symlinks=False).st_size
        except OSError:
            continue
    return total


def measure(config, history, now: float) -> DiskSample:
    """Each destination's file system now, and what our copies take there: the devices'
    inventories (kept from rsync's listings, nothing is walked) plus the raw database mirror."""
    usage = {}
    for kind in KINDS:
        path = nearest_existing(config.destination(kind))
        try:
            stats, fs = os.statvfs(path), os.stat(path).st_dev
        except OSError as error:
            log.warning("cannot measure the file system of %s: %s", path, error.strerror)
            continue
        inventories = sum(d.inventory[kind].bytes for d in history.devices.values() if kind in d.inventory)
        raw = tree_bytes(config.paths.results / DB_RAW_DIR) if kind == "results" else 0
        usage[kind] = Usage(stats.f_bavail * stats.f_frsize, stats.f_blocks * stats.f_frsize,
                            inventories + raw, raw, fs)
    return DiskSample(now, usage)


def record_usage(config, history, now: float) -> None:
    """Add this pass's sample (with its growth estimate) to the history; warn in the journal about
    each destination that will be full within [alert] disk_horizon days at that rate."""
    if not any(kind in d.inventory for d in history.devices.values() for kind in KINDS):
        return        # nothing copied yet: no figures worth keeping
    sample = forecast.with_growth(history.disk, measure(config, history, now))
    history.disk = forecast.add_sample(history.disk, sample)
    for kind, f in forecast.forecasts(history.disk).items():
        if f.short(config.alert.disk_horizon):
            log.warning("%s destination %s: full in %s at %s a day (%s free; warning below "
                        "[alert] disk_horizon=%g days)", kind, config.destination(kind), format_days(f.days),
                        human_size(f.per_day), human_size(f.free), config.alert.disk_horizon,
                        extra=dict(DESTINATION=kind, DAYS_TO_FULL=round(f.days, 1)))
