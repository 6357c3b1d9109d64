"""A device's databases on the node: which to take this pass, putting them in place, the raw mirror.

Decisions come from state, never from what happened to move in one attempt: each database's last
recovery is recorded in the history (:class:`ethoscope_rsync.state.history.DatabaseRecord`, with the size and
mtime of the device's .db and -wal at that time). A database is copied into the raw mirror and
recovered when the device's files changed since, when that recovery was not verified, or when the
node has no copy; one whose verified recovery still matches the device is finished: it is neither
held nor copied again, and its raw copy is removed. A recovery that failed is tried again every
pass, from the raw mirror even once the device deleted its file, and fails the device until it works.
"""
from __future__ import annotations

import dataclasses
import os
import shutil
import time
from pathlib import Path

from ethoscope_rsync.state import events
from ethoscope_rsync.backup import confine, livedb
from ethoscope_rsync.system.logs import device_fields, log
from ethoscope_rsync.backup.rsync import HIDDEN, raw_root


@dataclasses.dataclass(frozen=True)
class DatabaseWork:
    copy: tuple          # databases to copy into the raw mirror (paths relative to the device's folder)
    recover: tuple       # databases to recover into place (paths relative to the results root)
    live: bool           # one to copy is open on the device (-wal and -shm): it needs the holder
    finished: tuple      # unchanged since a verified recovery: their raw copies can go


def signature(entry) -> list:
    """What the device holds of one database: (db size, db mtime, wal size, wal mtime)."""
    db, wal, _shm = entry
    return [db.size, db.mtime, wal.size if wal else -1, wal.mtime if wal else ""]


def pick_databases(on_device: dict, known: dict, destination: Path, raw: Path) -> DatabaseWork:
    """`on_device`: path -> (db, wal, has_shm) from the probe; `known`: path -> DatabaseRecord."""
    copy, finished = [], []
    for path, entry in sorted(on_device.items()):
        record = known.get(path)
        if (record is None or not record.ok or record.signature != signature(entry)
                or not (destination / path).is_file()):
            copy.append(path)
        else:
            finished.append(path)
    retry = [path for path, record in sorted(known.items())      # failed earlier, gone from the device
             if path not in on_device and not record.ok and (raw / path).is_file()]
    live = any(on_device[path][1] is not None and on_device[path][2] for path in copy)
    return DatabaseWork(tuple(path.split("/", 1)[1] for path in copy), tuple(copy + retry), live, tuple(finished))


def confine_work(work: DatabaseWork, destination: Path, raw: Path, folder: str) -> tuple:
    """-> (`work` without the databases whose copy on the node or raw files would be written through
    a symbolic link out of the device's folder, one line for each of those). `raw` is the device's
    raw mirror; the paths of `work.recover` and `work.finished` are under the results root."""
    problems, dropped = [], set()
    for path in sorted(set(work.recover) | set(work.finished) | {f"{folder}/{p}" for p in work.copy}):
        problem = (confine.escape(raw / folder, raw / path) or confine.escape(raw / folder, raw / (path + "-wal"))
                   or confine.escape(destination / folder, destination / path))
        if problem:
            problems.append(problem)
            dropped.add(path)
    kept = dataclasses.replace(
        work, copy=tuple(p for p in work.copy if f"{folder}/{p}" not in dropped),
        recover=tuple(p for p in work.recover if p not in dropped),
        finished=tuple(p for p in work.finished if p not in dropped))
    return kept, problems


def prune_raw(raw: Path, finished) -> None:
    """Remove the raw copies of finished databases (the node's recovered copy is the backup)."""
    for path in finished:
        for suffix in ("", "-wal"):
            try:
                os.unlink(raw / (path + suffix))
            except FileNotFoundError:
                continue


def keep_aside(destination: Path, stamp: str, relative: str) -> Path | None:
    """--safe: hard-link (or, where links are refused, copy) the node's current copy into
    replaced/STAMP/ before it may be replaced. Raises OSError."""
    current = destination / relative
    if not current.is_file():
        return None
    kept = destination / HIDDEN / "replaced" / stamp / relative
    if kept.exists():
        return None
    kept.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(current, kept)
    except PermissionError:      # e.g. protected_hardlinks on a file owned by another user
        shutil.copy2(current, kept)
    return kept


def remove_leftovers(dest_db: Path) -> None:
    """Temporary files of a recovery that was killed (``.NAME.recover-*`` beside the copy)."""
    prefix = f".{dest_db.name}.recover-"
    try:
        names = os.listdir(dest_db.parent)
    except OSError:
        return
    for name in names:
        if name.startswith(prefix):
            try:
                os.unlink(dest_db.parent / name)
            except OSError:
                continue


def not_copied(problems: list, paths) -> dict:
    """Of `paths` (databases under the results root), those that rsync's problem lines of the raw
    copy name (the database or its -wal: unreadable, an I/O error) -> the first such line."""
    found = {}
    for path in paths:
        for line in problems:
            if f'/{path}"' in line or f'/{path}-wal"' in line:
                found[path] = line
                break
    return found


def _recover_one(job, device, path: str, sign: list, check_timeout: float, failed_copy: str) -> livedb.Verdict:
    """Recover one database into place within `check_timeout` seconds; report it. `failed_copy`:
    rsync's line if its raw copy failed in this attempt (then the raw mirror may be an older copy)."""
    config = job.config
    destination = config.destination("results")
    raw_db = raw_root(config, device) / path
    if failed_copy:              # never recover an older raw copy as if it were the device's current one
        why = failed_copy.rpartition('": ')[2] or failed_copy      # rsync's reason, after the quoted path
        verdict = livedb.Verdict(False, 0, f"not copied from the device: {why}", False)
        job.events.put(events.DatabaseChecked(device.key, path, "kept previous copy", 0, verdict.message, False, ()))
        log.warning("%s: database %s not copied: %s", device.name, os.path.basename(path), failed_copy,
                    extra=dict(device_fields(device), DATABASE=path))
        return verdict
    if not raw_db.is_file():     # gone from the device before it could be copied: nothing to take
        return livedb.Verdict(True, 0, "gone from the device", False)
    wal = raw_db.with_name(raw_db.name + "-wal")
    started = time.time()
    kept = None
    try:
        kept = keep_aside(destination, job.stamp, path) if config.transfer.safe else None
        remove_leftovers(destination / path)
        verdict = livedb.recover_database(raw_db, wal if wal.is_file() else None, destination / path,
                                          check_timeout=check_timeout, stop=job.stop)
        if kept is not None and not verdict.replaced:
            kept.unlink()
        size = (destination / path).stat().st_size if verdict.replaced else 0
    except OSError as error:
        verdict = livedb.Verdict(False, 0, f"{error.strerror or error}: {error.filename or path}", False)
    label = (("ok" if verdict.replaced else "unchanged") if verdict.ok
             else "not verified" if verdict.over_limits else "kept previous copy")
    job.events.put(events.DatabaseChecked(device.key, path, label, verdict.rows, verdict.message,
                                          verdict.ok, tuple(sign)))
    fields = dict(device_fields(device), DATABASE=path, DATABASE_ROWS=verdict.rows)
    if verdict.replaced:
        job.events.put(events.FileReceived(device.key, "results", path, size, 0, started, time.time()))
    if verdict.ok:
        log.info("%s: database %s verified (%d rows)", device.name, os.path.basename(path), verdict.rows,
                 extra=fields)
    else:
        log.warning("%s: database %s not replaced: %s", device.name, os.path.basename(path), verdict.message,
                    extra=fields)
    return verdict


DEFERRED = "not verified yet"
DEFERRED_MESSAGE = "left for the next pass: this pass's database budget for the device is spent"


def check_order(paths, known: dict) -> list:
    """The order a device's databases are checked in, so that a budget spent on some is fair to the
    others: first those never checked (or left by an earlier pass's budget), then those changed since a
    verified check, last those that failed before (a crafted database fails every time)."""
    def rank(path):
        record = known.get(path)
        return (0 if record is None else 1 if record.ok else 2, path)
    return sorted(paths, key=rank)


def recover_all(job, device, work: DatabaseWork, on_device: dict, deadline: float, copy_problems=()) -> tuple:
    """Recover the databases of `work`, each within [transfer] database_check_timeout (and what is
    left of the device's time), all within the device's database budget (time and CPU; those left
    are "not verified yet", the node keeps its copy, and the next pass takes them first) ->
    (reasons of those not verified, stopped early, whether another attempt in this pass could help:
    not when every failure was a database past its limits).
    `copy_problems`: rsync's problem lines of the raw copy; a database they name is not verified."""
    known = job.known.get(device.key, {})
    failed_copies = not_copied(list(copy_problems), work.recover)
    unverified: list = []
    transient = False
    transfer = job.config.transfer
    started, cpu = time.monotonic(), time.thread_time()       # the checks run in this thread
    order = check_order(work.recover, known)
    for index, path in enumerate(order):
        if time.monotonic() > deadline or job.stop.is_set():
            return unverified, True, True
        left = min(transfer.database_budget - (time.monotonic() - started),
                   transfer.database_cpu_budget - (time.thread_time() - cpu))
        if index and left <= 0:
            _defer(job, device, order[index:])
            break
        sign = signature(on_device[path]) if path in on_device else known[path].signature
        allowed = min(transfer.database_check_timeout, max(1.0, deadline - time.monotonic()),
                      max(1.0, left) if index else transfer.database_check_timeout)
        verdict = _recover_one(job, device, path, sign, allowed, failed_copies.get(path, ""))
        if job.stop.is_set():     # interrupted: the node keeps its copy, the next pass takes it again
            return unverified + ([] if verdict.ok else [f"{path}: {verdict.message}"]), True, True
        if not verdict.ok:
            unverified.append(f"{path}: {verdict.message}")
            transient = transient or not verdict.over_limits
    return unverified, False, transient


def _defer(job, device, paths) -> None:
    for path in paths:
        job.events.put(events.DatabaseChecked(device.key, path, DEFERRED, 0, DEFERRED_MESSAGE, False, ()))
    job.events.put(events.Warned(device.key, f"{len(paths)} database(s) not verified yet: {DEFERRED_MESSAGE}"))
    log.warning("%s: %d database(s) not verified yet, left for the next pass (database budget spent): %s",
                device.name, len(paths), ", ".join(os.path.basename(p) for p in paths[:5]),
                extra=device_fields(device))
