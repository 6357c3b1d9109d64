"""The status store: the single writer of status.json and history.json.

Device jobs never touch this state: they send :mod:`ethoscope_rsync.state.events` through a queue and
the pass's main thread applies them here and rewrites status.json at most once per ``interval``
seconds. Readers (the web service, ``ethoscope-backup status``) only ever see a complete file
because it is replaced with ``rename(2)`` after ``fsync``. The history is written once, when the
pass ends.
"""
from __future__ import annotations

import contextlib
import dataclasses
import errno
import fcntl
import json
import os
import tempfile
import time
from pathlib import Path

from ethoscope_rsync.config.record import KIND_TREES
from ethoscope_rsync.state import events as ev
from ethoscope_rsync.system.exits import Busy
from ethoscope_rsync.system.logs import one_line
from ethoscope_rsync.state.model import (COMPLETED, ERROR, FILES_LISTED, KILLED_MESSAGE, PASSES_KEPT, mapping,
                                         QUEUED, RUNNING, VERIFIED, DatabaseVerdict, DeviceRun, FileCopy, Pass,
                                         Progress, Status, Transfer)
from ethoscope_rsync.state.inventory import Inventories, bounded
from ethoscope_rsync.state.offsite import OffsiteState, ledger_from_json, ledger_to_json
from ethoscope_rsync.state.history import (DatabaseRecord, DeviceHistory, History, Inventory, PassSummary, Verification,
                                           last_seen)


MESSAGE_MAX = 1000      # characters of one message or warning of a device in the documents
WARNINGS_KEPT = 20      # a device's warnings kept in one pass's status


def write_json_atomic(path: Path, data: dict) -> None:
    """Write temp file in the same directory, fsync, rename over `path`, fsync the directory."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:    # dumps: the C encoder (dump's is Python)
            handle.write(json.dumps(data, separators=(",", ":")))
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(temp, 0o644)
        os.replace(temp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temp)
        raise
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


def read_json(path: Path) -> dict | None:
    """A JSON object from `path`, or None when missing or unreadable."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError):
        return None
    return data if isinstance(data, dict) else None


def load_status(path: Path) -> Status:
    return Status.from_json(read_json(path))


def load_history(path: Path) -> History:
    return History.from_json(read_json(path))


def load_verifications(path) -> dict:
    """verify.json -> key -> Verification (as the pass copies it into the history)."""
    return {str(k): Verification.from_json(v) for k, v in mapping(mapping(read_json(path)).get("devices")).items()
            if isinstance(v, dict)}


def save_history(path: Path, history: History) -> None:
    write_json_atomic(path, history.to_json())


def load_offsite(path: Path) -> OffsiteState:
    """offsite.json (the second copy's state; an empty record when there is none)."""
    return OffsiteState.from_json(read_json(path))


def save_offsite(path: Path, state: OffsiteState) -> None:
    write_json_atomic(path, state.to_json())


def ledger_path(offsite_file: Path) -> Path:
    return offsite_file.with_name("offsite-ledger.json")


def load_ledger(offsite_file: Path) -> dict:
    return ledger_from_json(read_json(ledger_path(offsite_file)))


def save_ledger(offsite_file: Path, ledger: dict) -> None:
    write_json_atomic(ledger_path(offsite_file), ledger_to_json(ledger))


@contextlib.contextmanager
def pass_lock(path: Path, wait=None):
    """An flock on the state dir's lock file: released by the kernel even if the pass crashes.
    Held by another: Busy, or with `wait` (a callable, told the holder's pid) waits for it."""
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
            if wait is None:
                raise Busy(f"another backup pass is already running (pid {holder}); "
                           f"this one exits without doing anything") from None
            wait(holder)
            fcntl.flock(fd, fcntl.LOCK_EX)
        if writable:
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        os.close(fd)


class StatusStore:
    """The pass's status and the history, owned by the single writer thread."""

    def __init__(self, path: Path, history: History, previous: Status | None = None, *, pid: int,
                 what: str, interval: float, clock=time.time, inventories: Inventories | None = None):
        self.path, self.interval, self.clock = path, interval, clock
        self.history = history
        self.inventories = inventories or Inventories()      # every device's files (None: in memory)
        for key, entry in history.devices.items():           # an old history's whole trees move there
            for kind, inventory in entry.inventory.items():
                if inventory.legacy is not None:
                    self.inventories.adopt(key, kind, inventory.legacy,
                                           (inventory.retired_files, inventory.retired_bytes))
                    inventory.legacy = None
        self.kinds = KIND_TREES[what]
        self._written = -float("inf")
        self._renamed: dict = {}   # device key at the pass's start -> the key it has since its first contact
        self.previous = previous or Status()
        if previous is not None:
            self._settle(previous)
        self.status = Status(run=Pass(pid=pid, started=clock(), outcome="running", what=what,
                                      message="discovering devices"))

    def _settle(self, previous: Status) -> None:
        """Devices that a killed pass left queued or running are failures of that pass."""
        for key, device in previous.devices.items():
            if device.cut_short:
                entry = self._history_of(key, device)
                entry.last_outcome, entry.last_error = ERROR, KILLED_MESSAGE
                entry.last_error_time = previous.generated or previous.run.started

    def _history_of(self, key: str, device: DeviceRun) -> DeviceHistory:
        entry = self.history.devices.setdefault(key, DeviceHistory())
        entry.id, entry.name = device.id, device.name
        entry.address = device.address or entry.address
        return entry

    # ---- devices and events -------------------------------------------------------------
    def add_device(self, machine_id: str, name: str, address: str, ciphers: str = "", cipher_reason: str = "") -> str:
        device = DeviceRun(id=machine_id, name=name, address=address, ciphers=ciphers, cipher_reason=cipher_reason,
                           progress=Progress(message="waiting for a free job"))
        self.status.devices[device.key] = device
        self.status.run.devices_total += 1
        return device.key

    def carry(self, key: str) -> bool:
        """A device not due in this scheduled pass keeps its last job's record from the previous status
        (done, whatever its outcome); False when there is none to keep."""
        earlier = self.previous.devices.get(key)
        if earlier is None or earlier.state not in (COMPLETED, ERROR):
            return False
        self.status.devices[key] = dataclasses.replace(earlier, ciphers=self.status.devices[key].ciphers)
        self.status.run.devices_done += 1
        self.status.run.devices_failed += earlier.state == ERROR
        return True

    def again(self, key: str, message: str) -> str:
        """A device whose last job ended is queued for its next copy in this pass (a scheduled pass);
        returns its key now (the machine id once pinned)."""
        key = self._renamed.get(key, key)
        device = self.status.devices[key]
        if device.state in (COMPLETED, ERROR):
            self.status.run.devices_done -= 1
            self.status.run.devices_failed -= device.state == ERROR
        device.state, device.progress = QUEUED, Progress(message=message)
        return key

    def apply(self, event) -> None:
        """Apply one event of a device job; an unknown event type is a programming error."""
        handler = self._HANDLERS.get(type(event))
        if handler is None:
            raise TypeError(f"not a status event: {event!r}")
        device = self.status.devices.get(self._renamed.get(event.key, event.key))
        if device is not None:
            if isinstance(getattr(event, "message", None), str):     # words from a device: one printable line
                event = dataclasses.replace(event, message=one_line(event.message)[:MESSAGE_MAX])
            handler(self, device, event)

    def _started(self, device: DeviceRun, event: ev.Started) -> None:
        device.state, device.started, device.ended, device.attempts = RUNNING, event.at, 0.0, event.attempt
        device.progress = Progress(message=f"attempt {event.attempt}")
        if event.attempt == 1:
            self._history_of(device.key, device).count += 1
            device.transfers, device.databases = {}, {}
        for transfer in device.transfers.values():      # a new attempt starts every tree again
            transfer.percent, transfer.progress_bytes, transfer.rate = 0.0, 0, 0.0

    def _contacted(self, device: DeviceRun, event: ev.Contacted) -> None:
        """The device's name and machine id are pinned to its host key; a device keyed by its
        name until now is keyed by its machine id from here on."""
        old = device.key
        device.id = event.machine_id
        if old != device.key:      # the job's later attempts may still use the old key: it stays valid
            self._renamed[old] = device.key
            self.status.devices = {(device.key if k == old else k): d for k, d in self.status.devices.items()}
            earlier = self.history.devices.pop(old, None)
            self.inventories.rename(old, device.key)
            entry = self._history_of(device.key, device)
            if earlier is not None and not entry.passes:
                entry.count, entry.passes = earlier.count, earlier.passes
        entry = self._history_of(device.key, device)
        entry.pinned = True
        entry.aes = event.aes
        if event.ciphers is not None:
            device.ciphers, device.cipher_reason = event.ciphers, event.cipher_reason
        self.history.retired.pop(device.key, None)

    def _warned(self, device: DeviceRun, event: ev.Warned) -> None:
        if event.message not in device.warnings and len(device.warnings) < WARNINGS_KEPT:
            device.warnings.append(event.message)

    def _progressed(self, device: DeviceRun, event: ev.Progressed) -> None:
        transfer = self._transfer(device, event.kind)
        transfer.percent, transfer.progress_bytes, transfer.rate = event.percent, event.bytes, event.rate
        self._sum_progress(device, event.kind, event.current_file)

    def _sum_progress(self, device: DeviceRun, kind: str, current_file: str) -> None:
        """The device's progress from its trees', which may move at once: the mean of their shares
        (a tree not started counts 0, a listed one 100), their bytes and rates added up."""
        trees = [device.transfers[k] for k in self.kinds if k in device.transfers]
        moving = [k for k in self.kinds if k in device.transfers and device.transfers[k].percent < 100]
        device.progress = Progress(percent=round(sum(t.percent for t in trees) / len(self.kinds), 1), kind=kind,
                                   bytes=sum(t.progress_bytes for t in trees),
                                   rate=sum(t.rate for t in trees if t.percent < 100), current_file=current_file,
                                   message="copying " + " and ".join(moving or [kind]))

    def _transfer(self, device: DeviceRun, kind: str) -> Transfer:
        return device.transfers.setdefault(kind, Transfer())

    def _file_received(self, device: DeviceRun, event: ev.FileReceived) -> None:
        transfer = self._transfer(device, event.kind)
        transfer.files.pop(event.path, None)
        transfer.files[event.path] = FileCopy(event.path, event.size, event.transferred, event.start, event.end)
        while len(transfer.files) > FILES_LISTED:
            transfer.files.pop(next(iter(transfer.files)))
        transfer.files_received += 1
        transfer.bytes_received += event.size
        transfer.bytes_sent += event.transferred
        self.status.run.files_received += 1
        self.status.run.bytes_received += event.transferred

    def _transfer_ended(self, device: DeviceRun, event: ev.TransferEnded) -> None:
        transfer = self._transfer(device, event.kind)
        transfer.ended, transfer.exit_code = self.clock(), event.exit_code
        transfer.ok, transfer.message = event.ok, event.message

    def _listed(self, device: DeviceRun, event: ev.Listed) -> None:
        transfer = self._transfer(device, event.kind)      # the tree is done in this attempt
        transfer.percent, transfer.rate = 100.0, 0.0
        self._sum_progress(device, event.kind, device.progress.current_file)
        entry = self._history_of(device.key, device)
        listing, untracked, untracked_bytes = bounded(dict(event.files))
        before = entry.inventory.get(event.kind) or Inventory()
        retired = self.inventories.replace(device.key, event.kind, listing, (before.retired_files,
                                                                             before.retired_bytes))
        entry.inventory[event.kind] = Inventory.of(listing, (untracked + event.untracked[0],
                                                             untracked_bytes + event.untracked[1]), retired)
        if event.kind == "results":      # records of databases the device no longer has
            entry.databases = {p: r for p, r in entry.databases.items() if p in listing or not r.ok}

    def _database_checked(self, device: DeviceRun, event: ev.DatabaseChecked) -> None:
        now = self.clock()
        device.databases[event.path] = DatabaseVerdict(event.verdict, event.rows, now, event.message)
        if event.signature:
            self._history_of(device.key, device).databases[event.path] = DatabaseRecord(
                list(event.signature), event.ok, event.rows, event.message, now)

    def _finished(self, device: DeviceRun, event: ev.Finished) -> None:
        device.state, device.ended = (COMPLETED if event.ok else ERROR), event.at
        device.error = "" if event.ok else event.message
        device.progress.message, device.progress.current_file = event.message, ""
        if event.ok:
            device.progress.percent = 100.0
        run = self.status.run
        run.devices_done += 1
        run.devices_failed += 0 if event.ok else 1
        copied = sum(t.bytes_sent for t in device.transfers.values())
        entry = self._history_of(device.key, device)
        entry.last_outcome = device.state
        if event.ok:
            entry.last_success, entry.last_bytes = event.at, copied
            if all(v.verdict in VERIFIED for v in device.databases.values()):
                entry.protected_up_to = max(entry.protected_up_to, device.started)
        else:
            entry.last_error, entry.last_error_time = event.message, event.at
        outcome = device.state if not event.ok or copied else "nothing"
        entry.passes = (entry.passes + [PassSummary(event.at, outcome, copied)])[-PASSES_KEPT:]

    _HANDLERS: dict = {ev.Started: _started, ev.Contacted: _contacted, ev.Warned: _warned,
                       ev.Progressed: _progressed, ev.FileReceived: _file_received,
                       ev.TransferEnded: _transfer_ended, ev.Listed: _listed, ev.DatabaseChecked: _database_checked,
                       ev.Finished: _finished}

    # ---- the pass -----------------------------------------------------------------------
    def set_message(self, message: str) -> None:
        self.status.run.message = message

    def finish(self, outcome: str, message: str, completed: bool) -> None:
        """The pass ends; `completed`: its device jobs all ran to their end (whatever their outcome),
        which makes it the last backup (upstream's meaning; failures show per device)."""
        run = self.status.run
        run.ended, run.outcome, run.message = self.clock(), outcome, message
        if completed:
            self.history.last_backup = run.ended
        if outcome == "success":
            self.history.good_passes += 1

    def retire(self, now: float, after: float, keep=frozenset()) -> list:
        """Devices not in this pass and not seen for `after` seconds (0: never) leave the history,
        so every published view; the name and machine id of those that answered stay pinned
        (``History.retired``), so that nobody can claim them later. Returns their names. Those whose
        key or name is in `keep` (paused devices) stay."""
        if after <= 0:
            return []
        gone = [key for key, entry in self.history.devices.items()
                if key not in self.status.devices and now - last_seen(entry) > after
                and key not in keep and entry.name not in keep]
        for key in gone:
            entry = self.history.devices.pop(key)
            self.inventories.forget(key)
            if entry.pinned and entry.id == key and entry.name:
                self.history.retired[key] = entry.name
        return [self.history.retired.get(key, key) for key in gone]

    def running(self) -> list:
        return [d for d in self.status.devices.values() if d.state == RUNNING]

    def maybe_write(self, now: float | None = None) -> bool:
        now = time.monotonic() if now is None else now
        if now - self._written < self.interval:
            return False
        self.write()
        self._written = now
        return True

    def write(self) -> None:
        self.status.generated = self.clock()
        write_json_atomic(self.path, self.status.to_json())
