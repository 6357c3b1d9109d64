"""One device's backup job (the bounded pool running a pass over all devices: :mod:`ethoscope_rsync.backup.pool`).

A job probes the device (one shell command: machine id, CPU, its top-level folders, its databases),
then pulls only the device's own ``<machine id>/`` folder of each tree into the same folder on
the node — the videos in a second thread beside the results, the results' sessions over one shared
ssh connection, the videos over their own — and copies its databases through the live-database path
(see livedb) only when they changed since their last verified recovery. Jobs run in worker threads
but share no mutable state (a first contact sets only its own device's entry of ``Job.ciphers``):
each reports through a queue of :mod:`ethoscope_rsync.state.events` and the pass's main thread is
the only status writer. Every process a job starts goes through ``job.processes`` (the
:mod:`ethoscope_rsync.system.execute` module, or a fake in unit tests).
"""
from __future__ import annotations

import dataclasses
import queue
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from ethoscope_rsync.state import events
from ethoscope_rsync.state.inventory import untracked_warning
from ethoscope_rsync.system import execute
from ethoscope_rsync.backup import confine, livedb
from ethoscope_rsync.backup import probe as probing
from ethoscope_rsync.config.record import Config
from ethoscope_rsync.backup.databases import DatabaseWork, confine_work, pick_databases, prune_raw, recover_all
from ethoscope_rsync.config.devices import Device
from ethoscope_rsync.backup.destinations import disk_full_message, free_space_problem, remove_orphan_partials
from ethoscope_rsync.render.humanize import human_size
from ethoscope_rsync.backup.listing import Listing
from ethoscope_rsync.backup.pins import forget_hint
from ethoscope_rsync.system.logs import device_fields, log
from ethoscope_rsync.backup.reader import OutputReader
from ethoscope_rsync.backup.rsync import (Outcome, choose_ciphers, classify_exit, error_lines, informative_line,
                                          make_rsync_command, make_ssh_command, parse_stats, raw_root,
                                          ssh_target)
from ethoscope_rsync.backup.probe import Probe, inside


# Longest a device keeps its databases' WAL from restarting for us, should the node vanish mid-copy
# without the device noticing; a copy that outlasts it is still verified before it is used.
MAX_HOLD = 3600
COMPLETED_MESSAGE = "Backup completed successfully"
NOT_STARTED_MESSAGE = "not started: the pass was stopped"
MAX_PROBLEMS_NAMED = 10
LINK_LABEL = "symbolic link out of the device's folder"


@dataclasses.dataclass(frozen=True)
class Job:
    """What every device job of one pass shares: its settings (never changed by a job), and the
    queue and the event through which the jobs talk to the pass."""
    config: Config
    key: str                      # SSH private key path actually used
    bwlimit_kib: int              # per-transfer share of the total budget
    stamp: str                    # pass timestamp, names --safe backup folders
    control_dir: str              # where each device's shared ssh connection has its socket ("": none)
    events: queue.Queue
    stop: threading.Event
    processes: execute.Processes = execute   # the one place that runs processes (or a test's fake)
    known: dict = dataclasses.field(default_factory=dict)   # device key -> {path: DatabaseRecord}
    ciphers: dict = dataclasses.field(default_factory=dict)  # device name -> ssh ciphers offered (rsync.choose_ciphers)
    node_aes: bool | None = None  # the node's CPU has AES instructions (None: it does not say)
    owners: dict = dataclasses.field(default_factory=dict)   # machine id -> name: pinned, or claimed in this pass


@dataclasses.dataclass(frozen=True)
class JobResult:
    device: Device
    ok: bool
    message: str


class TransferFailed(Exception):
    def __init__(self, outcome: Outcome, message: str):
        super().__init__(message)
        self.outcome = outcome


def _ssh(job: Job, device: Device) -> tuple:
    return make_ssh_command(job.config, device, job.key, job.control_dir, job.ciphers.get(device.name))


def _shared_by(job: Job, kind: str) -> str:
    """The videos connect on their own: a session multiplexed over the shared connection costs the
    node's CPU more per byte than the connection's own (bench scenario 10), and the videos are the
    bulk of the bytes; the results' few small sessions share it."""
    return "" if kind == "videos" else job.control_dir


def _failure_message(job: Job, device: Device, kind: str, outcome: Outcome, result) -> str:
    if not outcome.ok and "No space left" in result.stderr:
        return disk_full_message(job.config.destination(kind))
    if outcome.label.startswith("host key"):
        return f"{outcome.label}: connection refused in case it is an impostor; {forget_hint(device.name)}"
    line = informative_line(result.stderr)
    return f"{outcome.label}: {line[:200]}" if not outcome.ok and line else outcome.label


def _stopped(job: Job) -> tuple:
    """(Outcome, message) of a job that a stop request or its time budget ended."""
    if job.stop.is_set():
        return Outcome(False, False, "interrupted"), "interrupted by a stop request"
    return (Outcome(False, False, "device time budget exhausted"),
            f"gave up after [transfer] device_timeout={job.config.transfer.device_timeout}s")


def _outcome(job: Job, device: Device, kind: str, result) -> tuple:
    """(Outcome, message) of a finished process of the job."""
    if result.interrupted or result.timed_out:
        return _stopped(job)
    outcome = classify_exit(result.returncode, result.stderr)
    return outcome, _failure_message(job, device, kind, outcome, result)


def _awaits_cpu(job: Job, device: Device) -> bool:
    """At a device's first contact its ciphers wait for what its CPU says in the probe."""
    return job.ciphers.get(device.name) == ""


def _probe(job: Job, device: Device, deadline: float) -> Probe:
    """Ask the device who it is and what it holds; this also opens the job's shared connection,
    except at the device's first contact: then it connects on its own (see _learn_ciphers)."""
    config = job.config
    ssh = make_ssh_command(config, device, job.key, "" if _awaits_cpu(job, device) else job.control_dir,
                           job.ciphers.get(device.name))
    argv = probing.make_probe_command(ssh, ssh_target(config, device), config.paths.remote_results,
                                      config.paths.remote_videos)
    timeout = min(max(1.0, deadline - time.monotonic()), config.ssh.connect_timeout + config.transfer.io_timeout)
    result = job.processes.run(argv, timeout=timeout, stop=job.stop, cut_at=probing.MAX_OUTPUT)
    outcome, message = _outcome(job, device, "results", result)
    if not outcome.ok and not getattr(result, "cut", False):     # cut: an incomplete answer, below
        raise TransferFailed(outcome, message)
    found = probing.parse_probe(result.stdout)
    if not found.complete:     # cut by the link: try again; past the limits: the same answer again
        again = found.shortfall == probing.CUT_SHORT
        raise TransferFailed(Outcome(False, again, "incomplete answer"),
                             f"the device's answer to the probe was cut short: {found.shortfall}")
    return found


def _transfer(job: Job, device: Device, kind: str, folder: str, databases: str, deadline: float,
              only: tuple = ()) -> Listing:
    """Run one rsync of the device's folder; report files and progress. Raises TransferFailed,
    except for files that could not be copied (rsync 23): those come back as problems."""
    argv = make_rsync_command(job.config, device, kind, key=job.key, folder=folder, bwlimit_kib=job.bwlimit_kib,
                              stamp=job.stamp, databases=databases, only=only, control_dir=_shared_by(job, kind),
                              ciphers=job.ciphers.get(device.name))
    reader = OutputReader(job.events, device.key, kind, folder, report_files=databases != "raw")
    remaining = max(1.0, deadline - time.monotonic())
    result = job.processes.stream(argv, reader, timeout=remaining, stop=job.stop)
    listing = reader.listing
    if reader.outside:
        _ignored_names(job, device, f"rsync's output for {kind}/{folder}/", reader.outside)
    stats = parse_stats(reader.records)
    outcome, message = _outcome(job, device, kind, result)
    part = "databases" if databases == "raw" else "tree"
    fields = dict(device_fields(device), TRANSFER_KIND=kind, TRANSFER_BYTES=stats.transferred_size,
                  TRANSFER_FILES=stats.transferred_files, RSYNC_EXIT_CODE=result.returncode)
    if databases != "raw":
        job.events.put(events.TransferEnded(device.key, kind, result.returncode, outcome.ok, message))
    if outcome.ok or result.returncode == 23 and not (result.interrupted or result.timed_out):
        log.info("%s: %s %s: %d files, %s copied (%s)", device.name, kind, part, stats.transferred_files,
                 human_size(stats.transferred_size), outcome.label, extra=fields)
        if not outcome.ok:     # some files could not be copied: everything else was
            listing.problems = [f"{kind}: {line}" for line in error_lines(result.stderr)] or [message]
            log.warning("%s: %s %s: %s", device.name, kind, part, "; ".join(listing.problems)[:500], extra=fields)
        return listing
    log.warning("%s: %s %s failed: %s", device.name, kind, part, message, extra=fields)
    raise TransferFailed(outcome, message)


def _ignored_names(job: Job, device: Device, where: str, names: list) -> None:
    """Names from the device that would leave its folder (absolute, '..') are never used: say so."""
    shown = ", ".join(repr(name)[1:-1][:80] for name in names[:3]) + (", ..." if len(names) > 3 else "")
    message = f"ignored {len(names)} name(s) outside the device's folder in {where}: {shown}"
    job.events.put(events.Warned(device.key, message))
    log.warning("%s: %s", device.name, message, extra=device_fields(device))


def _listed(job: Job, device: Device, kind: str, listing: Listing, databases: dict | None = None) -> None:
    job.events.put(listing.event(device.key, kind, databases))
    if listing.untracked:
        message = untracked_warning(kind, listing.untracked)
        job.events.put(events.Warned(device.key, message))
        log.warning("%s: %s", device.name, message, extra=device_fields(device))


def _hold_and_copy(job: Job, device: Device, folder: str, work: DatabaseWork, deadline: float) -> Listing:
    """Copy the databases to take into the raw mirror; while a live one is among them, a holder on
    the device keeps a read transaction open on it (see livedb)."""
    config = job.config
    try:
        raw_root(config, device).mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise TransferFailed(Outcome(False, False, "cannot create the raw mirror"),
                             f"cannot create {raw_root(config, device)}: {error.strerror}") from None
    if not work.live:
        return _transfer(job, device, "results", folder, "raw", deadline, only=work.copy)
    holder = livedb.make_holder_command(_ssh(job, device) + (ssh_target(config, device),), config.ssh.remote_python,
                                        f"{config.paths.remote_results}/{folder}",
                                        max_hold_seconds=min(MAX_HOLD, max(60, int(deadline - time.monotonic()))))
    with job.processes.held(holder, stop=job.stop) as held:
        first_line = held.ready_line(config.ssh.connect_timeout + 20)
        hold = livedb.parse_holder_ready(first_line)
        if hold is None:
            log.warning("%s: could not hold live databases open on the device (%s); copies are "
                        "verified on the node and a torn one never replaces a good one",
                        device.name, first_line[:120] or "no answer", extra=device_fields(device))
        raw = _transfer(job, device, "results", folder, "raw", deadline, only=work.copy)
    if hold is not None:   # live ones: make the next raw copy compare them in full (see livedb)
        mirror = raw_root(config, device)
        held_paths = [f"{folder}/{name}" for name in hold.held if inside(folder, f"{folder}/{name}")]
        if len(held_paths) < len(hold.held):
            _ignored_names(job, device, f"the holder's answer for results/{folder}/",
                           [name for name in hold.held if not inside(folder, f"{folder}/{name}")])
        livedb.forget_mtimes([mirror / f"{path}{suffix}" for path in held_paths for suffix in ("", "-wal")
                              if not confine.escape(mirror / folder, mirror / f"{path}{suffix}")])
    return raw


def _results(job: Job, device: Device, folder: str, found: Probe, deadline: float) -> list:
    """The device's results folder: other files first, then the databases. Returns problems."""
    config = job.config
    destination = config.destination("results")
    if folder not in found.top["results"]:
        job.events.put(events.Listed(device.key, "results", ()))
        return []
    if not config.transfer.live_databases:
        listing = _transfer(job, device, "results", folder, "all", deadline)
        _listed(job, device, "results", listing)
        return listing.problems
    tree = _transfer(job, device, "results", folder, "skip", deadline)
    if not tree.problems:
        remove_orphan_partials(destination, tree.files)
    on_device = found.databases(folder)
    root = raw_root(config, device)
    work, outside = confine_work(pick_databases(on_device, job.known.get(device.key, {}), destination, root),
                                 destination, root, folder)
    raw_problems = _hold_and_copy(job, device, folder, work, deadline).problems if work.copy else []
    unverified, stopped, transient = recover_all(job, device, work, on_device, deadline, raw_problems)
    if stopped:
        raise TransferFailed(*_stopped(job))
    prune_raw(raw_root(config, device), work.finished)
    databases = {}
    for path in (p for p in on_device if not confine.escape(destination / folder, destination / p)):
        try:
            databases[path] = (destination / path).stat().st_size
        except OSError:
            continue
    _listed(job, device, "results", tree, databases)
    if outside:
        raise TransferFailed(Outcome(False, False, LINK_LABEL), "; ".join(outside)[:1000])
    if unverified:   # the node keeps its previous copy; a new copy is tried at once, unless it cannot help
        raise TransferFailed(Outcome(False, transient, "database copy not verified"),
                             f"{len(unverified)} database copy(ies) not verified, previous copy kept: "
                             + "; ".join(unverified)[:300])
    return tree.problems + raw_problems


def _attempt(job: Job, device: Device, deadline: float, first: bool) -> tuple:
    """One attempt at the whole job -> (device, problems). Raises TransferFailed."""
    config = job.config
    full = next(filter(None, (free_space_problem(config.destination(kind), config.transfer.min_free)
                              for kind in config.kinds())), "")
    if full:
        raise TransferFailed(Outcome(False, False, "disk full"), full)
    found = _probe(job, device, deadline)
    if not found.machine_id:
        raise TransferFailed(Outcome(False, False, "no machine id"),
                             "the device has no valid /etc/machine-id: its own folder is unknown")
    if device.id and found.machine_id != device.id:
        claimant = {"node": "the node server says", "mdns": "its mDNS announcement says"}.get(
            device.source, "the machine id pinned at its first contact is")
        raise TransferFailed(Outcome(False, False, "machine id mismatch"),
                             f"the device at {device.address} says its machine id is {found.machine_id}, "
                             f"{claimant} {device.id}: not backed up")
    owner = job.owners.get(found.machine_id, device.name)
    if owner != device.name:     # a [devices] entry at its first contact, answering with another's identity
        raise TransferFailed(Outcome(False, False, "machine id of another device"),
                             f"the device at {device.address} says its machine id is {found.machine_id}, "
                             f"which is {owner}'s: not backed up (correct the [devices] entry; "
                             f"{forget_hint(owner)})")
    if _awaits_cpu(job, device):
        _learn_ciphers(job, device, found)
    else:
        job.events.put(events.Contacted(device.key, found.machine_id, found.aes))
    device = dataclasses.replace(device, id=found.machine_id)
    folder = device.id
    problem = confine.areas_problem(config, device, folder, job.stamp)
    if problem:
        raise TransferFailed(Outcome(False, False, LINK_LABEL), problem)
    if first:
        for kind, names in found.foreign(folder).items():
            shown = ", ".join(repr(name)[1:-1][:60] for name in names[:5]) + (", ..." if len(names) > 5 else "")
            message = (f"not copied: {kind}/{shown} on the device (only its own folder "
                       f"{kind}/{folder}/ is backed up)")
            job.events.put(events.Warned(device.key, message))
            log.warning("%s: %s", device.name, message, extra=device_fields(device))
    return device, _trees(job, device, folder, found, deadline)


def _learn_ciphers(job: Job, device: Device, found: Probe) -> None:
    """A device's first contact: its copies get the ciphers its CPU and the node's suit from this pass
    on (its biggest copy is often this one); the results stage's first session opens the shared
    connection with them."""
    offered, why = choose_ciphers(job.config.ssh.ciphers, job.node_aes, found.aes, probed=True)
    job.ciphers[device.name] = offered
    job.events.put(events.Contacted(device.key, found.machine_id, found.aes, offered, why))


def _trees(job: Job, device: Device, folder: str, found: Probe, deadline: float) -> list:
    """Both trees at once: the videos in a second thread beside the results (the databases' holder,
    raw copy and recovery; their sessions over one shared connection), so that the results stage
    costs the videos no time. Returns problems; either tree failing fails the attempt (the results'
    failure first), once both have ended."""
    kinds = job.config.kinds()
    if "results" not in kinds:
        return _videos(job, device, folder, found, deadline)
    if "videos" not in kinds:
        return _results(job, device, folder, found, deadline)
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="videos") as beside:
        videos = beside.submit(_videos, job, device, folder, found, deadline)
        try:
            problems = _results(job, device, folder, found, deadline)
        except TransferFailed as failure:
            raise _worse(failure, videos.exception()) from None     # waits for the videos to end
        return problems + videos.result()


def _worse(failure: TransferFailed, other: BaseException | None) -> BaseException:
    """Of two trees' failures, the one to report: a bug, else one that must not be retried, else the first."""
    if other is None:
        return failure
    if not isinstance(other, TransferFailed) or failure.outcome.retry and not other.outcome.retry:
        return other
    return failure


def _videos(job: Job, device: Device, folder: str, found: Probe, deadline: float) -> list:
    """The device's videos folder. Returns problems."""
    if folder not in found.top["videos"]:
        job.events.put(events.Listed(device.key, "videos", ()))
        return []
    listing = _transfer(job, device, "videos", folder, "all", deadline)
    if not listing.problems:
        _listed(job, device, "videos", listing)
        remove_orphan_partials(job.config.destination("videos"), listing.files)
    return listing.problems


def backup_device(job: Job, device: Device) -> JobResult:
    """One device's pass: probe, then results and videos at once, with bounded retries of transient failures.
    Whatever happens, the device's job ends with a Finished event."""
    if job.stop.is_set():
        job.events.put(events.Finished(device.key, False, NOT_STARTED_MESSAGE, time.time()))
        return JobResult(device, False, NOT_STARTED_MESSAGE)
    try:
        return _backup_device(job, device)
    except Exception as error:   # noqa: BLE001 - a bug must not leave the device "running"
        message = f"internal error: {type(error).__name__}: {error}"[:300]
        log.error("%s: %s", device.name, message, exc_info=log.isEnabledFor(10), extra=device_fields(device))
        job.events.put(events.Finished(device.key, False, message, time.time()))
        return JobResult(device, False, message)
    finally:
        if job.control_dir:   # close the device's shared ssh connection
            job.processes.run(_ssh(job, device) + ("-O", "exit", ssh_target(job.config, device)), timeout=10)


def _backup_device(job: Job, device: Device) -> JobResult:
    config = job.config
    deadline = time.monotonic() + config.transfer.device_timeout
    message, key = "", device.key
    for attempt in range(1, config.transfer.retries + 2):
        job.events.put(events.Started(key, attempt, time.time()))
        try:
            device, problems = _attempt(job, device, deadline, attempt == 1)
            key = device.key
        except TransferFailed as failure:
            message = str(failure)
            if failure.outcome.retry and attempt <= config.transfer.retries and not job.stop.is_set():
                delay = config.transfer.retry_delay * 2 ** (attempt - 1)
                if time.monotonic() + delay < deadline:
                    log.info("%s: %s; retrying in %.0fs", device.name, message, delay,
                             extra=device_fields(device))
                    if not job.stop.wait(delay):
                        continue
            break
        else:
            if problems:
                message = (f"{len(problems)} problem(s), everything else was copied: "
                           + "; ".join(problems[:MAX_PROBLEMS_NAMED]))[:1000]
                break
            job.events.put(events.Finished(key, True, COMPLETED_MESSAGE, time.time()))
            log.info("%s: backup completed", device.name, extra=device_fields(device))
            return JobResult(device, True, COMPLETED_MESSAGE)
    job.events.put(events.Finished(key, False, message, time.time()))
    log.error("%s: backup failed: %s", device.name, message, extra=device_fields(device))
    return JobResult(device, False, message)
