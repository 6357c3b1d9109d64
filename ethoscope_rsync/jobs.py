"""One device's backup job, and the bounded pool that runs a pass over all devices.

Jobs run in worker threads but share no mutable state: each reports through a queue of
:class:`~ethoscope_rsync.status.Event` and the pass's main thread is the only status writer.
"""
from __future__ import annotations

import dataclasses
import os
import queue
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from ethoscope_rsync import execute, livedb
from ethoscope_rsync.config import Config
from ethoscope_rsync.devices import Device
from ethoscope_rsync.logs import device_fields, log
from ethoscope_rsync.rsync import HIDDEN, Outcome, classify_exit, make_rsync_command, make_ssh_command, \
    parse_file_line, parse_progress, parse_stats, raw_root, ssh_target
from ethoscope_rsync.status import Event
from ethoscope_rsync.units import human_size


# Longest a device keeps its databases' WAL from restarting for us, should the node vanish mid-copy
# without the device noticing; a copy that outlasts it is still verified before it is used.
MAX_HOLD = 3600


@dataclasses.dataclass(frozen=True)
class Job:
    """What every device job of one pass shares (all immutable)."""
    config: Config
    key: str                      # SSH private key path actually used
    bwlimit_kib: int              # per-transfer share of the total budget
    stamp: str                    # pass timestamp, names --safe backup folders
    control_dir: str              # where each device's shared ssh connection has its socket
    events: queue.Queue
    stop: threading.Event


@dataclasses.dataclass(frozen=True)
class JobResult:
    device: Device
    ok: bool
    message: str


class TransferFailed(Exception):
    def __init__(self, outcome: Outcome, message: str):
        super().__init__(message)
        self.outcome = outcome


def nearest_existing(path: Path) -> Path:
    """`path`, or its closest existing parent (a destination may not exist before the first pass)."""
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def free_space_problem(path: Path, reserve: int) -> str:
    """'' when `path`'s filesystem keeps `reserve` bytes free, else an operator message."""
    try:
        stats = os.statvfs(nearest_existing(path))
    except OSError as error:
        return f"cannot check free space of {path}: {error.strerror}"
    free = stats.f_bavail * stats.f_frsize
    if free >= reserve:
        return ""
    return (f"not enough free space on the filesystem of {path}: {human_size(free)} free, "
            f"{human_size(reserve)} must stay free ([transfer] min_free)")


def disk_full_message(path: Path) -> str:
    """What to tell the operator when rsync hit ENOSPC on the node."""
    try:
        stats = os.statvfs(path)
        free = human_size(stats.f_bavail * stats.f_frsize)
    except OSError:
        free = "unknown"
    return (f"destination full: no space left on the filesystem of {path} ({free} free); "
            f"interrupted files stay in .ethoscope-backup-partial folders, nothing was replaced")


def _transfer(job: Job, device: Device, kind: str, databases: str, deadline: float) -> tuple:
    """Run one rsync; report files and progress; -> (stats, FileEvents received). Raises TransferFailed."""
    argv = make_rsync_command(job.config, device, kind, key=job.key, bwlimit_kib=job.bwlimit_kib,
                              stamp=job.stamp, databases=databases, control_dir=job.control_dir)
    records, changed = [], []
    state = {"current": "", "started": time.time(), "last_progress": 0.0}

    def on_record(record: str) -> None:
        event = parse_file_line(record)
        if event is not None:
            now = time.time()
            if event.changed:
                changed.append(event)
                if databases != "raw":
                    job.events.put(Event("file", device.key, dict(
                        kind=kind, path=event.name, size=event.length, transferred=event.transferred,
                        start=state["started"], end=now)))
            state.update(current=event.name, started=now)
            return
        progress = parse_progress(record)
        if progress is not None:
            now = time.monotonic()
            if now - state["last_progress"] >= 0.25 or progress.percent == 100:
                state["last_progress"] = now
                job.events.put(Event("progress", device.key, dict(
                    kind=kind, percent=progress.percent, transferred=progress.bytes,
                    rate=progress.rate, current=state["current"])))
            return
        records.append(record)

    remaining = max(1.0, deadline - time.monotonic())
    result = execute.stream(argv, on_record, timeout=remaining, stop=job.stop)
    stats = parse_stats(records)
    if result.interrupted:
        outcome, message = Outcome(False, False, "interrupted"), "interrupted by a stop request"
    elif result.timed_out:
        outcome = Outcome(False, False, "device time budget exhausted")
        message = f"gave up after [transfer] device_timeout={job.config.device_timeout}s"
    else:
        outcome = classify_exit(result.returncode, result.stderr)
        message = outcome.label
        if not outcome.ok and "No space left" in result.stderr:
            message = disk_full_message(job.config.destination(kind))
        elif outcome.label.startswith("host key"):
            message = (f"{outcome.label}: connection refused in case it is an impostor; if "
                       f"{device.name}'s SD card was replaced, run: ethoscope-backup forget-host {device.name}")
        elif not outcome.ok and result.last_error_line:
            message = f"{outcome.label}: {result.last_error_line[:200]}"
    fields = dict(device_fields(device), TRANSFER_KIND=kind, TRANSFER_BYTES=stats.transferred_size,
                  TRANSFER_FILES=stats.transferred_files, RSYNC_EXIT_CODE=result.returncode)
    job.events.put(Event("transfer", device.key, dict(
        kind=kind, files=stats.files, total_size=stats.total_size, exit_code=result.returncode,
        ok=outcome.ok, message=message, part="databases" if databases == "raw" else "tree")))
    if outcome.ok:
        log.info("%s: %s %s: %d files, %s copied (%s)", device.name, kind,
                 "databases" if databases == "raw" else "tree", stats.transferred_files,
                 human_size(stats.transferred_size), outcome.label, extra=fields)
        return stats, changed
    log.warning("%s: %s failed: %s", device.name, kind, message, extra=fields)
    raise TransferFailed(outcome, message)


def _databases(job: Job, device: Device, changed: list, deadline: float) -> None:
    """Recover every database whose raw copy changed (or has no node copy yet) into place."""
    destination = job.config.destination("results")
    raw = raw_root(job.config, device)
    received = {}
    for event in changed:
        if event.name.endswith((".db", ".db-wal")):
            name = event.name[:-4] if event.name.endswith("-wal") else event.name
            received[name] = received.get(name, 0) + event.transferred
    candidates = set(received)
    if raw.is_dir():
        candidates.update(str(p.relative_to(raw)) for p in raw.rglob("*.db")
                          if not (destination / p.relative_to(raw)).exists())
    unverified = []
    for relative in sorted(candidates):
        if time.monotonic() > deadline or job.stop.is_set():
            raise TransferFailed(Outcome(False, False, "stopped"), "stopped before all databases were verified")
        raw_db = raw / relative
        if not raw_db.is_file():
            continue
        wal = raw_db.with_name(raw_db.name + "-wal")
        kept = _keep_aside(job, destination, relative) if job.config.safe else None
        started = time.time()
        verdict = livedb.recover_database(raw_db, wal if wal.is_file() else None, destination / relative)
        if kept is not None and not verdict.replaced:
            kept.unlink()
        label = "ok" if verdict.ok else "kept previous copy"
        job.events.put(Event("database", device.key, dict(
            path=relative, verdict=label if verdict.replaced or not verdict.ok else "unchanged",
            rows=verdict.rows, message=verdict.message)))
        fields = dict(device_fields(device), DATABASE=relative, DATABASE_ROWS=verdict.rows)
        if verdict.replaced:
            job.events.put(Event("file", device.key, dict(
                kind="results", path=relative, size=(destination / relative).stat().st_size,
                transferred=received.get(relative, 0), start=started, end=time.time())))
        if verdict.ok:
            log.info("%s: database %s verified (%d rows)", device.name, os.path.basename(relative),
                     verdict.rows, extra=fields)
        else:
            unverified.append(f"{relative}: {verdict.message}")
            log.warning("%s: database %s not replaced: %s", device.name, os.path.basename(relative),
                        verdict.message, extra=fields)
    if unverified:   # the node keeps its previous copy; a new copy is tried at once
        raise TransferFailed(Outcome(False, True, "database copy not verified"),
                             f"{len(unverified)} database copy(ies) not verified, previous copy kept: "
                             + "; ".join(unverified)[:300])


def _keep_aside(job: Job, destination: Path, relative: str) -> Path | None:
    """--safe: hard-link the node's current copy into replaced/STAMP/ before it may be replaced."""
    current = destination / relative
    if not current.is_file():
        return None
    kept = destination / HIDDEN / "replaced" / job.stamp / relative
    kept.parent.mkdir(parents=True, exist_ok=True)
    if not kept.exists():
        os.link(current, kept)
        return kept
    return None


def _results(job: Job, device: Device, deadline: float) -> None:
    config = job.config
    if not config.live_databases:
        _transfer(job, device, "results", "all", deadline)
        return
    holder = livedb.make_holder_command(make_ssh_command(config, device, job.key, job.control_dir)
                                        + (ssh_target(config, device),),
                                        config.remote_python, config.remote_results,
                                        max_hold_seconds=min(MAX_HOLD, max(60, int(deadline - time.monotonic()))))
    raw_root(config, device).mkdir(parents=True, exist_ok=True)
    with execute.held(holder, stop=job.stop) as held:
        # the holder starts on the device while the other results files are copied
        _transfer(job, device, "results", "skip", deadline)
        first_line = held.ready_line(config.connect_timeout + 20)
        hold = livedb.parse_holder_ready(first_line)
        if hold is None:
            log.warning("%s: could not hold live databases open on the device (%s); copies are "
                        "verified on the node and a torn one never replaces a good one",
                        device.name, first_line[:120] or "no answer", extra=device_fields(device))
        _, changed = _transfer(job, device, "results", "raw", deadline)
    _databases(job, device, changed, deadline)
    if hold is not None:   # live ones: make the next pass compare them in full (see livedb)
        raw = raw_root(config, device)
        livedb.forget_mtimes([raw / f"{name}{suffix}" for name in hold.held for suffix in ("", "-wal")])


def backup_device(job: Job, device: Device) -> JobResult:
    """One device's pass: results then videos, with bounded retries of transient failures."""
    try:
        return _backup_device(job, device)
    finally:
        if job.control_dir:   # close the device's shared ssh connection
            execute.run(make_ssh_command(job.config, device, job.key, job.control_dir)
                        + ("-O", "exit", ssh_target(job.config, device)), timeout=10)


def _backup_device(job: Job, device: Device) -> JobResult:
    config = job.config
    deadline = time.monotonic() + config.device_timeout
    message = ""
    for attempt in range(1, config.retries + 2):
        job.events.put(Event("start", device.key, dict(attempt=attempt, started=time.time())))
        try:
            for kind in config.kinds():
                problem = free_space_problem(config.destination(kind), config.min_free_bytes)
                if problem:
                    raise TransferFailed(Outcome(False, False, "disk full"), problem)
                if kind == "results":
                    _results(job, device, deadline)
                else:
                    _transfer(job, device, kind, "all", deadline)
        except TransferFailed as failure:
            message = str(failure)
            if failure.outcome.retry and attempt <= config.retries and not job.stop.is_set():
                delay = config.retry_delay * 2 ** (attempt - 1)
                if time.monotonic() + delay < deadline:
                    log.info("%s: %s; retrying in %.0fs", device.name, message, delay,
                             extra=device_fields(device))
                    if not job.stop.wait(delay):
                        continue
            break
        else:
            job.events.put(Event("done", device.key, dict(ok=True, message="Backup completed successfully",
                                                          finished=time.time())))
            log.info("%s: backup completed", device.name, extra=device_fields(device))
            return JobResult(device, True, "Backup completed successfully")
    job.events.put(Event("done", device.key, dict(ok=False, message=message, finished=time.time())))
    log.error("%s: backup failed: %s", device.name, message, extra=device_fields(device))
    return JobResult(device, False, message)


def share_bandwidth(total_kib: int, jobs: int, devices: int) -> int:
    """Per-transfer --bwlimit so that concurrent transfers together stay within the total."""
    if not total_kib:
        return 0
    return max(1, total_kib // max(1, min(jobs, devices)))


def run_pool(job: Job, devices: tuple, on_tick) -> list:
    """Back up `devices` with at most config.jobs at once; call on_tick() from this thread
    whenever events arrived or every half second. Returns JobResults in device order."""
    with ThreadPoolExecutor(max_workers=job.config.jobs, thread_name_prefix="job") as pool:
        futures = [pool.submit(backup_device, job, device) for device in devices]
        for future in futures:   # wake the writer the moment a job ends, not at its next poll
            future.add_done_callback(lambda _future: job.events.put(_WAKE))
        while not all(f.done() for f in futures):
            on_tick(_drain(job.events, 0.5))
        on_tick(_drain(job.events, 0))
        return [f.result() for f in futures]


_WAKE = object()


def _drain(events: queue.Queue, timeout: float) -> list:
    batch = []
    try:
        batch.append(events.get(timeout=timeout) if timeout else events.get_nowait())
        while True:
            batch.append(events.get_nowait())
    except queue.Empty:
        pass
    return [event for event in batch if event is not _WAKE]
