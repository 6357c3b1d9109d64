"""One backup pass end to end: lock, discover, run the pool, keep the status and history.

Exit codes: see :mod:`ethoscope_rsync.system.exits`.
"""
from __future__ import annotations

import logging
import os
import queue
import shutil
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path

from ethoscope_rsync.config.load import credential_key
from ethoscope_rsync.config.record import Config
from ethoscope_rsync.backup.discovery import DiscoveryError, discover
from ethoscope_rsync.backup.destinations import prune_replaced, record_usage
from ethoscope_rsync.system.exits import EXIT_BUSY, EXIT_FAILED, EXIT_OK, Busy
from ethoscope_rsync.render.humanize import human_size
from ethoscope_rsync.backup.job import Job
from ethoscope_rsync.system.logs import Notifier, log
from ethoscope_rsync.state import pauses
from ethoscope_rsync.state.model import ERROR, is_stale
from ethoscope_rsync.backup.pool import run_pool, share_bandwidth
from ethoscope_rsync.backup.continuous import Scheduler, due_soon
from ethoscope_rsync.backup.schedule import Schedule
from ethoscope_rsync.backup.probe import has_aes
from ethoscope_rsync.backup.rsync import HIDDEN, choose_ciphers
from ethoscope_rsync.backup.pins import add_name_aliases, admitted, identities, pins
from ethoscope_rsync.state.inventory import open_inventories
from ethoscope_rsync.system.leftovers import scratch
from ethoscope_rsync.state.store import (StatusStore, load_history, load_status, load_verifications, pass_lock,
                                         save_history)


class StopRequest(threading.Event):
    """Set by SIGTERM/SIGINT; remembers which signal so the process can die by it afterwards."""
    signum = 0


def _summary(store: StatusStore) -> str:
    run = store.status.run
    text = f"{run.devices_done}/{run.devices_total} devices done, {human_size(run.bytes_received)}"
    return text + (f", {run.devices_failed} failed" if run.devices_failed else "")


class TerminalProgress:
    """A one-line live view on an interactive terminal."""

    def __init__(self, stream=sys.stderr):
        self.stream = stream
        self.enabled = stream.isatty()

    def show(self, store: StatusStore) -> None:
        if not self.enabled:
            return
        running = [f"{d.name} {d.progress.percent:.0f}% {d.progress.kind}".rstrip() for d in store.running()]
        line = f"{_summary(store)} | " + ", ".join(running[:4])
        self.stream.write("\r\033[K" + line[:200])
        self.stream.flush()

    def clear(self) -> None:
        if self.enabled:
            self.stream.write("\r\033[K")
            self.stream.flush()


def _install_stop_handler(stop: threading.Event) -> None:
    def handler(signum, frame):
        log.warning("received %s: stopping transfers", signal.Signals(signum).name)
        if isinstance(stop, StopRequest):     # the caller dies by it afterwards
            stop.signum = signum
        stop.set()
    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)


def run_pass(config: Config, stop: threading.Event | None = None, schedule: Schedule | None = None) -> int:
    """One complete backup pass; returns the exit code. With a `schedule`, a scheduled pass: each device
    copied whenever its interval has passed, until none is due soon (backup/continuous.py)."""
    stop = stop or StopRequest()
    if threading.current_thread() is threading.main_thread():
        _install_stop_handler(stop)
    try:
        with pass_lock(config.lock_file):
            history = load_history(config.history_file)
            history.destinations = {kind: str(config.destination(kind)) for kind in ("results", "videos")}
            inventories, problem = open_inventories(config.inventory_file)
            if problem:
                log.error("%s", problem)
            store = StatusStore(config.paths.status_file, history, load_status(config.paths.status_file),
                                pid=os.getpid(),
                                what=config.transfer.what, interval=config.status.update_interval,
                                inventories=inventories)
            notifier = Notifier()
            try:
                return _locked_pass(config, stop, store, notifier, schedule)
            except Exception as error:   # noqa: BLE001 - whatever happened, the pass ends with its status
                message = f"internal error: {type(error).__name__}: {error}"[:300]
                log.error("%s", message, exc_info=log.isEnabledFor(logging.DEBUG))
                return _end(config, store, notifier, "failed", message, EXIT_FAILED)
            finally:
                if inventories.problem:
                    log.error("%s", inventories.problem)
                inventories.close()
    except Busy as busy:
        log.error("%s", busy)
        return EXIT_BUSY


def make_destinations(config: Config) -> str:
    """Create every destination root before any transfer ('' or one line naming the folder)."""
    for kind in config.kinds():
        folder = config.destination(kind)
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            return (f"cannot create the {kind} destination {folder}: {error.strerror or error} "
                    f"(the pass's sandbox opens the configured destinations at boot and at systemctl "
                    f"daemon-reload: ethoscope-backup check says what is missing)")
    return ""


def prune_old_versions(config: Config) -> None:
    """Old versions kept by --safe go after [transfer] keep_replaced_days."""
    for kind in config.kinds():
        folder = config.destination(kind) / HIDDEN / "replaced"
        try:
            removed = prune_replaced(folder, config.transfer.keep_replaced_days, time.time())
        except OSError as error:
            log.warning("cannot remove old versions in %s: %s", folder, error.strerror or error)
            continue
        if removed:
            log.info("removed old versions kept by --safe for more than %g days: %s/{%s}",
                     config.transfer.keep_replaced_days, folder, ",".join(removed))


def control_directory(candidates) -> str:
    """A private folder for the devices' shared ssh connections whose socket paths stay short
    enough ("" when none is: then every ssh connects on its own); those a killed pass left go first."""
    for base in candidates:
        # ssh binds <dir>/<%C: 40 hex>.<17 random characters> and a socket path holds 107 bytes
        if len(str(base)) + len(f"/ssh-{os.getpid()}-XXXXXXXX/") + 40 + 18 > 107:
            continue
        try:
            return str(scratch(base, "ssh"))
        except OSError:
            continue
    return ""


def _locked_pass(config: Config, stop: threading.Event, store: StatusStore, notifier: Notifier,
                 schedule: Schedule | None = None) -> int:
    terminal = TerminalProgress()
    notifier.status("discovering devices")
    if schedule is None:       # a scheduled pass shows itself once a device is due
        store.write()
    try:
        found = discover(config, identities(store.history))
    except DiscoveryError as error:
        log.error("discovery failed: %s", error)
        return _end(config, store, notifier, "discovery failed", str(error), EXIT_FAILED)
    for warning in found.warnings:
        log.warning("discovery: %s", warning)
    devices = pauses.not_paused(found.devices, config.pauses_file, time.time())   # ethoscope-backup pause
    started = f"pass started: {len(devices)} device(s) from {found.source}"
    if schedule is None:       # a scheduled pass says so once a device is due (the timer starts one every 30 s)
        log.info("%s", started)
    names = ", ".join(f"ETHOSCOPE_{t:03d}" if isinstance(t, int) else t for t in found.missing)
    if found.missing:
        log.error("asked for with -e but not found: %s", names)
        store.set_message(f"not found: {names}")
    if not devices and found.missing:
        return _end(config, store, notifier, "failed", f"no selected device was found ({names})", EXIT_FAILED)
    if not devices and found.held:
        return _end(config, store, notifier, "failed", "; ".join(found.held)[:500], EXIT_FAILED)
    if not devices:
        return _end(config, store, notifier, "nothing to do", "no device to back up", EXIT_OK, completed=True)
    problem = make_destinations(config)
    if problem:
        log.error("%s", problem)
        return _end(config, store, notifier, "failed", problem, EXIT_FAILED)
    prune_old_versions(config)
    devices, refused = admitted(devices, store.history)
    for message in refused:
        log.error("%s", message)
    if not devices:
        return _end(config, store, notifier, "failed", "; ".join(refused)[:500], EXIT_FAILED)
    if schedule is not None and not refused and not due_soon(devices, store.history, schedule, time.time()):
        log.debug("no device due within %.0fs: nothing to do", schedule.linger)
        return EXIT_OK
    if schedule is not None:
        log.info("%s", started)
    try:
        add_name_aliases(config.ssh.known_hosts)
    except OSError as error:
        log.warning("cannot update %s: %s", config.ssh.known_hosts, error.strerror)
    node_aes = node_has_aes()
    ciphers = choose_all_ciphers(config, devices, store, node_aes)
    store.set_message(f"backing up {len(devices)} device(s)")
    control_dir = control_directory((config.paths.status_file.parent, Path(tempfile.gettempdir()), Path("/tmp")))
    if not control_dir:
        log.warning("no folder with a short enough path for ssh's shared connections: each transfer connects alone")
    try:
        job = Job(config=config, key=str(credential_key(config)),
                  bwlimit_kib=share_bandwidth(config.transfer.bwlimit, config.transfer.jobs, len(devices),
                                              len(config.kinds())),
                  stamp=time.strftime("%Y-%m-%d_%H-%M-%S"), control_dir=control_dir,
                  events=queue.Queue(), stop=stop,
                  known={d.key: dict(store.history.devices[d.key].databases) for d in devices
                         if d.key in store.history.devices}, ciphers=ciphers, node_aes=node_aes,
                  owners={**pins(store.history), **{d.id: d.name for d in devices if d.id}})
        return _run_devices(config, job, devices, found.missing + found.held + refused, store, notifier,
                            terminal, schedule)
    finally:
        if control_dir:
            shutil.rmtree(control_dir, ignore_errors=True)


def node_has_aes(cpuinfo: Path = Path("/proc/cpuinfo")) -> bool | None:
    """Whether this node's CPU has AES instructions (None: it does not say)."""
    try:
        with open(cpuinfo, encoding="utf-8", errors="replace") as handle:
            return has_aes(handle.read(1 << 16))
    except OSError:
        return None


def choose_all_ciphers(config: Config, devices, store: StatusStore, node_aes: bool | None) -> dict:
    """Each device's ssh ciphers (device name -> list offered), from the node's CPU and the device's
    as learnt at an earlier contact; each device is added to the status with them."""
    chosen = {}
    for device in devices:
        past = store.history.devices.get(device.key)
        offered, why = choose_ciphers(config.ssh.ciphers, node_aes, past.aes if past else None)
        chosen[device.name] = offered
        store.add_device(device.id, device.name, device.address, ciphers=offered, cipher_reason=why)
    return chosen


def warn_stale(store: StatusStore, stale_after: float, now: float) -> list:
    """Warn in the journal of every device with no successful backup for too long: those that
    failed in this pass and those that are no longer found at all. Returns their keys."""
    stale = []
    for key, entry in store.history.devices.items():
        run = store.status.devices.get(key)
        if (run is not None and run.state != ERROR) or not is_stale(entry.last_success, now, stale_after):
            continue
        stale.append(key)
        age = "ever" if not entry.last_success else f"{(now - entry.last_success) / 3600:.1f} hours"
        where = "not found in this pass" if run is None else "failed in this pass"
        log.warning("%s: STALE: no successful backup for %s (more than [status] stale_after=%.0fs), %s",
                    entry.name or key, age, stale_after, where,
                    extra=dict(DEVICE_ID=key, DEVICE_NAME=entry.name, DEVICE_STALE=1))
    return stale


def _end(config: Config, store: StatusStore, notifier: Notifier, outcome: str, message: str, code: int,
         completed: bool = False) -> int:
    """The pass's final status and history, written whatever happened before. `completed`: every
    device job ran to its end (some may have failed): then it is the last backup, as upstream's."""
    warn_stale(store, config.status.stale_after, time.time())
    record_usage(config, store.history, time.time())
    store.history.verification = load_verifications(config.verify_file)
    retired = store.retire(time.time(), config.status.retire_after, keep=pauses.keys(config.pauses_file, time.time()))
    if retired:
        log.info("not seen for more than [status] retire_after=%.0fs, no longer shown (their identities stay "
                 "pinned): %s", config.status.retire_after, ", ".join(retired))
    store.finish(outcome, message, completed=completed)
    for what, write in (("history", lambda: save_history(config.history_file, store.history)),
                        ("status", store.write)):      # one failing (a full disk) never loses the other
        try:
            write()
        except OSError as error:
            log.error("cannot write the %s: %s: %s", what, error.strerror or error, error.filename or "")
            code = code if code != EXIT_OK else EXIT_FAILED
    summary = _summary(store)
    notifier.status(f"{outcome}: {summary}")
    failed = code != EXIT_OK and store.status.run.devices_total > 0   # else the cause was logged already
    (log.error if failed else log.info)("pass %s: %s", outcome, summary)
    return code


def _admit_new(config: Config, store: StatusStore, job: Job, known: set) -> list:
    """A long scheduled pass's later discovery: the devices not in it yet, checked and added to the status."""
    try:
        found = discover(config, identities(store.history))
    except DiscoveryError as error:
        log.warning("discovery failed, the pass goes on with the devices it has: %s", error)
        return []
    listed = pauses.not_paused(found.devices, config.pauses_file, time.time())
    fresh, refused = admitted(listed, store.history, known)
    for message in refused:
        log.error("%s", message)
    job.ciphers.update(choose_all_ciphers(config, fresh, store, node_has_aes()))
    job.owners.update({d.id: d.name for d in fresh if d.id})
    return fresh


def _run_devices(config, job, devices, missing, store, notifier, terminal, schedule=None) -> int:
    stop = job.stop

    def on_tick(batch):
        for event in batch:
            store.apply(event)
        if store.maybe_write():
            notifier.status(_summary(store))
            terminal.show(store)

    stopped = stop.is_set
    if schedule is None:
        results = run_pool(job, devices, on_tick)
    else:
        scheduler = Scheduler(job, store, schedule, paused=lambda ready: {   # paused while the pass runs
            d.key for d in set(ready) - set(pauses.not_paused(ready, config.pauses_file, time.time()))})
        scheduler.add(devices)
        store.write()
        results = scheduler.run(on_tick, save=lambda: save_history(config.history_file, store.history),
                                rediscover=lambda known: _admit_new(config, store, job, known))
        stopped = lambda: scheduler.interrupted     # noqa: E731 - a stop between copies ends it as usual
    terminal.clear()
    failed = [r for r in results if not r.ok]
    if stopped():
        outcome, message = "interrupted", "stopped by a signal before every device finished"
    elif failed:
        outcome = "failed"
        message = f"{len(failed)} of {len(results)} device(s) failed: " + ", ".join(
            f"{r.device.name} ({r.message})" for r in failed)[:500]
    elif missing:
        outcome, message = "failed", f"{len(results)} device(s) backed up, {len(missing)} not found or refused"
    else:
        outcome, message = "success", f"{len(results)} device(s) backed up"
    code = EXIT_FAILED if failed or missing or stopped() else EXIT_OK
    return _end(config, store, notifier, outcome, message, code, completed=not stopped())
