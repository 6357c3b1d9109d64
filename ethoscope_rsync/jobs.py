"""One device's backup job, and the bounded pool that runs a pass over all devices.

Jobs run in worker threads but share no mutable state: each reports through a queue of
:mod:`ethoscope_rsync.events` and the pass's main thread is the only status writer. Every process
a job starts goes through ``job.processes`` (the :mod:`ethoscope_rsync.execute` module, or a fake
in unit tests), so retries, messages, stage order and database selection are tested without sshd.
"""
from __future__ import annotations

import dataclasses
import os
import queue
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from ethoscope_rsync import events, execute, livedb
from ethoscope_rsync.config import Config
from ethoscope_rsync.devices import Device
from ethoscope_rsync.disk import disk_full_message, free_space_problem
from ethoscope_rsync.humanize import human_size
from ethoscope_rsync.logs import device_fields, log
from ethoscope_rsync.rsync import HIDDEN, Outcome, classify_exit, make_rsync_command, make_ssh_command, \
    parse_file_line, parse_progress, parse_stats, raw_root, ssh_target


# Longest a device keeps its databases' WAL from restarting for us, should the node vanish mid-copy
# without the device noticing; a copy that outlasts it is still verified before it is used.
MAX_HOLD = 3600
COMPLETED_MESSAGE = "Backup completed successfully"


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
    processes: object = execute   # .stream(), .run(), .held(): the one place that runs processes


@dataclasses.dataclass(frozen=True)
class JobResult:
    device: Device
    ok: bool
    message: str


class TransferFailed(Exception):
    def __init__(self, outcome: Outcome, message: str):
        super().__init__(message)
        self.outcome = outcome


@dataclasses.dataclass
class _Listing:
    """What one rsync reported: every file of the tree (path -> size) and those it received."""
    files: dict = dataclasses.field(default_factory=dict)
    received: list = dataclasses.field(default_factory=list)     # FileEvents


def _failure_message(job: Job, device: Device, kind: str, outcome: Outcome, result) -> str:
    if not outcome.ok and "No space left" in result.stderr:
        return disk_full_message(job.config.destination(kind))
    if outcome.label.startswith("host key"):
        return (f"{outcome.label}: connection refused in case it is an impostor; if "
                f"{device.name}'s SD card was replaced, run: ethoscope-backup forget-host {device.name}")
    if not outcome.ok and result.last_error_line:
        return f"{outcome.label}: {result.last_error_line[:200]}"
    return outcome.label


def _transfer(job: Job, device: Device, kind: str, databases: str, deadline: float) -> _Listing:
    """Run one rsync; report files and progress. Raises TransferFailed."""
    argv = make_rsync_command(job.config, device, kind, key=job.key, bwlimit_kib=job.bwlimit_kib,
                              stamp=job.stamp, databases=databases, control_dir=job.control_dir)
    listing, records = _Listing(), []
    state = {"current": "", "started": time.time(), "last_progress": 0.0}

    def on_record(record: str) -> None:
        event = parse_file_line(record)
        if event is not None:
            if not event.is_file:
                return
            now = time.time()
            listing.files[event.name] = event.length
            if event.changed:
                listing.received.append(event)
                if databases != "raw":
                    job.events.put(events.FileReceived(device.key, kind, event.name, event.length,
                                                       event.transferred, state["started"], now))
                state["started"] = now
            state["current"] = event.name
            return
        progress = parse_progress(record)
        if progress is not None:
            now = time.monotonic()
            if now - state["last_progress"] >= 0.25 or progress.percent == 100:
                state["last_progress"] = now
                job.events.put(events.Progressed(device.key, kind, progress.percent, progress.bytes,
                                                 progress.rate, state["current"]))
            return
        records.append(record)

    remaining = max(1.0, deadline - time.monotonic())
    result = job.processes.stream(argv, on_record, timeout=remaining, stop=job.stop)
    stats = parse_stats(records)
    if result.interrupted:
        outcome, message = Outcome(False, False, "interrupted"), "interrupted by a stop request"
    elif result.timed_out:
        outcome = Outcome(False, False, "device time budget exhausted")
        message = f"gave up after [transfer] device_timeout={job.config.device_timeout}s"
    else:
        outcome = classify_exit(result.returncode, result.stderr)
        message = _failure_message(job, device, kind, outcome, result)
    part = "databases" if databases == "raw" else "tree"
    fields = dict(device_fields(device), TRANSFER_KIND=kind, TRANSFER_BYTES=stats.transferred_size,
                  TRANSFER_FILES=stats.transferred_files, RSYNC_EXIT_CODE=result.returncode)
    if databases != "raw":
        job.events.put(events.TransferEnded(device.key, kind, result.returncode, outcome.ok, message))
    if outcome.ok:
        log.info("%s: %s %s: %d files, %s copied (%s)", device.name, kind, part, stats.transferred_files,
                 human_size(stats.transferred_size), outcome.label, extra=fields)
        return listing
    log.warning("%s: %s %s failed: %s", device.name, kind, part, message, extra=fields)
    raise TransferFailed(outcome, message)


def databases_to_recover(raw: Path, destination: Path, received: list) -> list:
    """Relative paths of the raw mirror's databases to recover into place: those whose .db or -wal
    arrived in this transfer, and those with no node copy yet."""
    wanted = {event.name[:-4] if event.name.endswith("-wal") else event.name
              for event in received if event.name.endswith((".db", ".db-wal"))}
    if raw.is_dir():
        wanted.update(str(p.relative_to(raw)) for p in raw.rglob("*.db")
                      if not (destination / p.relative_to(raw)).exists())
    return sorted(wanted)


def _databases(job: Job, device: Device, received: list, deadline: float) -> None:
    """Recover every database whose raw copy changed (or has no node copy yet) into place."""
    destination = job.config.destination("results")
    raw = raw_root(job.config, device)
    sent = {}
    for event in received:
        name = event.name[:-4] if event.name.endswith("-wal") else event.name
        sent[name] = sent.get(name, 0) + event.transferred
    unverified = []
    for relative in databases_to_recover(raw, destination, received):
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
        label = ("ok" if verdict.replaced else "unchanged") if verdict.ok else "kept previous copy"
        job.events.put(events.DatabaseChecked(device.key, relative, label, verdict.rows, verdict.message))
        fields = dict(device_fields(device), DATABASE=relative, DATABASE_ROWS=verdict.rows)
        if verdict.replaced:
            job.events.put(events.FileReceived(device.key, "results", relative,
                                               (destination / relative).stat().st_size,
                                               sent.get(relative, 0), started, time.time()))
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


def _node_sizes(destination: Path, paths) -> dict:
    """Sizes of the node's copies of `paths` (relative to `destination`); missing ones are left out."""
    sizes = {}
    for path in paths:
        try:
            sizes[path] = (destination / path).stat().st_size
        except OSError:
            continue
    return sizes


def _results(job: Job, device: Device, deadline: float) -> None:
    config = job.config
    if not config.live_databases:
        listing = _transfer(job, device, "results", "all", deadline)
        job.events.put(events.Listed(device.key, "results", tuple(listing.files.items())))
        return
    holder = livedb.make_holder_command(make_ssh_command(config, device, job.key, job.control_dir)
                                        + (ssh_target(config, device),),
                                        config.remote_python, config.remote_results,
                                        max_hold_seconds=min(MAX_HOLD, max(60, int(deadline - time.monotonic()))))
    raw_root(config, device).mkdir(parents=True, exist_ok=True)
    with job.processes.held(holder, stop=job.stop) as held:
        # the holder starts on the device while the other results files are copied
        tree = _transfer(job, device, "results", "skip", deadline)
        first_line = held.ready_line(config.connect_timeout + 20)
        hold = livedb.parse_holder_ready(first_line)
        if hold is None:
            log.warning("%s: could not hold live databases open on the device (%s); copies are "
                        "verified on the node and a torn one never replaces a good one",
                        device.name, first_line[:120] or "no answer", extra=device_fields(device))
        raw = _transfer(job, device, "results", "raw", deadline)
    _databases(job, device, raw.received, deadline)
    if hold is not None:   # live ones: make the next pass compare them in full (see livedb)
        mirror = raw_root(config, device)
        livedb.forget_mtimes([mirror / f"{name}{suffix}" for name in hold.held for suffix in ("", "-wal")])
    databases = _node_sizes(config.destination("results"), [p for p in raw.files if p.endswith(".db")])
    job.events.put(events.Listed(device.key, "results", tuple({**tree.files, **databases}.items())))


def backup_device(job: Job, device: Device) -> JobResult:
    """One device's pass: results then videos, with bounded retries of transient failures."""
    try:
        return _backup_device(job, device)
    finally:
        if job.control_dir:   # close the device's shared ssh connection
            job.processes.run(make_ssh_command(job.config, device, job.key, job.control_dir)
                              + ("-O", "exit", ssh_target(job.config, device)), timeout=10)


def _attempt(job: Job, device: Device, deadline: float) -> None:
    config = job.config
    for kind in config.kinds():
        problem = free_space_problem(config.destination(kind), config.min_free_bytes)
        if problem:
            raise TransferFailed(Outcome(False, False, "disk full"), problem)
        if kind == "results":
            _results(job, device, deadline)
        else:
            listing = _transfer(job, device, kind, "all", deadline)
            job.events.put(events.Listed(device.key, kind, tuple(listing.files.items())))


def _backup_device(job: Job, device: Device) -> JobResult:
    config = job.config
    deadline = time.monotonic() + config.device_timeout
    message = ""
    for attempt in range(1, config.retries + 2):
        job.events.put(events.Started(device.key, attempt, time.time()))
        try:
            _attempt(job, device, deadline)
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
            job.events.put(events.Finished(device.key, True, COMPLETED_MESSAGE, time.time()))
            log.info("%s: backup completed", device.name, extra=device_fields(device))
            return JobResult(device, True, COMPLETED_MESSAGE)
    job.events.put(events.Finished(device.key, False, message, time.time()))
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


def _drain(events_queue: queue.Queue, timeout: float) -> list:
    batch = []
    try:
        batch.append(events_queue.get(timeout=timeout) if timeout else events_queue.get_nowait())
        while True:
            batch.append(events_queue.get_nowait())
    except queue.Empty:
        pass
    return [event for event in batch if event is not _WAKE]
