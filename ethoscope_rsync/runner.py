"""One backup pass end to end: lock, discover, run the pool, keep the status and history.

Exit codes (fixed, documented in ethoscope-backup(8)): 0 all good or nothing to do, 1 a device
failed (or discovery failed, or the pass was stopped), 2 usage/configuration error,
75 another pass is already running.
"""
from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import queue
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path

from ethoscope_rsync.config import Config, credential_key
from ethoscope_rsync.discovery import DiscoveryError, discover
from ethoscope_rsync.jobs import Job, run_pool, share_bandwidth
from ethoscope_rsync.logs import Notifier, log
from ethoscope_rsync.render import is_stale
from ethoscope_rsync.status import StatusBook, load_history, read_json, save_history
from ethoscope_rsync.units import human_size

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_BUSY = 0, 1, 2, 75


class Busy(Exception):
    """Another pass holds the lock."""


@contextlib.contextmanager
def pass_lock(path: Path):
    """An flock on the state dir's lock file: released by the kernel even if the pass crashes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd, writable = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o664), True
    except PermissionError:          # someone else's lock file: locking needs only read access
        fd, writable = os.open(path, os.O_RDONLY | os.O_CLOEXEC), False
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as error:
            if error.errno not in (errno.EWOULDBLOCK, errno.EACCES):
                raise
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
            raise Busy(f"another backup pass is already running (pid {holder}); "
                       f"this one exits without doing anything") from None
        if writable:
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        os.close(fd)


class StopRequest(threading.Event):
    """Set by SIGTERM/SIGINT; remembers which signal so the process can die by it afterwards."""
    signum = 0


def _summary(book: StatusBook) -> str:
    done, total, failed, transferred = book.totals()
    text = f"{done}/{total} devices done, {human_size(transferred)}"
    return text + (f", {failed} failed" if failed else "")


class TerminalProgress:
    """A one-line live view on an interactive terminal."""

    def __init__(self, stream=sys.stderr):
        self.stream = stream
        self.enabled = stream.isatty()

    def show(self, book: StatusBook) -> None:
        if not self.enabled:
            return
        running = [f"{d['name']} {d['progress']['backup_status']:.0f}% {d['progress']['kind']}".rstrip()
                   for d in book.doc["devices"].values() if d.get("status") == "running"]
        line = f"{_summary(book)} | " + ", ".join(running[:4])
        self.stream.write("\r\033[K" + line[:200])
        self.stream.flush()

    def clear(self) -> None:
        if self.enabled:
            self.stream.write("\r\033[K")
            self.stream.flush()


def _install_stop_handler(stop: threading.Event) -> None:
    def handler(signum, frame):
        log.warning("received %s: stopping transfers", signal.Signals(signum).name)
        stop.signum = signum
        stop.set()
    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)


def run_pass(config: Config, stop: threading.Event | None = None) -> int:
    """One complete backup pass; returns the exit code."""
    stop = stop or StopRequest()
    if threading.current_thread() is threading.main_thread():
        _install_stop_handler(stop)
    try:
        with pass_lock(config.lock_file):
            return _locked_pass(config, stop)
    except Busy as busy:
        log.error("%s", busy)
        return EXIT_BUSY


def _locked_pass(config: Config, stop: threading.Event) -> int:
    history = load_history(config.history_file)
    book = StatusBook(config.status_file, history, read_json(config.status_file), pid=os.getpid(),
                      what=config.what, interval=config.update_interval,
                      directories={"results": config.results_dir, "videos": config.videos_dir})
    notifier, terminal = Notifier(), TerminalProgress()
    notifier.status("discovering devices")
    book.write()
    try:
        found = discover(config)
    except DiscoveryError as error:
        log.error("discovery failed: %s", error)
        book.finish("discovery failed", str(error), success=False)
        book.write()
        return EXIT_FAILED
    for warning in found.warnings:
        log.warning("discovery: %s", warning)
    devices = found.devices
    log.info("pass started: %d device(s) from %s", len(devices), found.source)
    if found.missing:
        names = ", ".join(f"ETHOSCOPE_{t:03d}" if isinstance(t, int) else t for t in found.missing)
        log.error("asked for with -e but not found: %s", names)
        book.set_message(f"not found: {names}")
    if not devices and found.missing:
        book.finish("failed", f"no selected device was found ({names})", success=False)
        book.write()
        return EXIT_FAILED
    if not devices:
        book.finish("nothing to do", "no device to back up", success=True)
        book.write()
        save_history(config.history_file, history)
        notifier.status("nothing to do")
        return EXIT_OK
    for device in devices:
        book.add_device(device.key, device.name, device.address, device.id)
    book.set_message(f"backing up {len(devices)} device(s)")
    with tempfile.TemporaryDirectory(prefix="ethoscope-backup-ssh-") as control_dir:
        job = Job(config=config, key=str(credential_key(config)),
                  bwlimit_kib=share_bandwidth(config.bwlimit_kib, config.jobs, len(devices)),
                  stamp=time.strftime("%Y-%m-%d_%H-%M-%S"), control_dir=control_dir,
                  events=queue.Queue(), stop=stop)
        return _run_devices(config, job, devices, found.missing, book, history, notifier, terminal)


def warn_stale(book: StatusBook, stale_after: float, now: float) -> None:
    """Flag, in the status and the journal, devices with no successful backup for too long."""
    for device in book.doc["devices"].values():
        last = device.get("last_success") or 0
        device["stale"] = device.get("status") == "error" and is_stale(last, now, stale_after)
        if device["stale"]:
            age = "ever" if not last else f"{(now - last) / 3600:.1f} hours"
            log.warning("%s: STALE: no successful backup for %s (more than [status] stale_after=%.0fs)",
                        device["name"], age, stale_after,
                        extra={"DEVICE_ID": device["id"] or device["name"], "DEVICE_NAME": device["name"],
                               "DEVICE_STALE": 1})


def _run_devices(config, job, devices, missing, book, history, notifier, terminal) -> int:
    stop = job.stop

    def on_tick(events):
        for event in events:
            book.apply(event)
        if book.maybe_write():
            notifier.status(_summary(book))
            terminal.show(book)

    results = run_pool(job, devices, on_tick)
    terminal.clear()
    failed = [r for r in results if not r.ok]
    if stop.is_set():
        outcome, message = "interrupted", "stopped by a signal before every device finished"
    elif failed:
        outcome = "failed"
        message = f"{len(failed)} of {len(results)} device(s) failed: " + ", ".join(
            f"{r.device.name} ({r.message})" for r in failed)[:500]
    elif missing:
        outcome, message = "failed", f"{len(results)} device(s) backed up, {len(missing)} asked for not found"
    else:
        outcome, message = "success", f"{len(results)} device(s) backed up"
    failed = failed or list(missing)
    warn_stale(book, config.stale_after, time.time())
    book.finish(outcome, message, success=not failed and not stop.is_set())
    book.write()
    save_history(config.history_file, history)
    summary = _summary(book)
    notifier.status(f"{outcome}: {summary}")
    (log.error if failed or stop.is_set() else log.info)("pass %s: %s", outcome, summary)
    return EXIT_FAILED if failed or stop.is_set() else EXIT_OK
