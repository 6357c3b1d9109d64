"""``ethoscope-backup verify``: re-check the node's copies, long after they landed.

* A file with an ``.md5`` sidecar next to it (video chunks and mp4s) is hashed and compared.
  Sidecars hold either the bare hex digest or ``md5sum`` lines (``HEX  NAME`` or ``HEX *NAME``); a
  sidecar whose file is missing, or that holds no digest, is damage too.
* A database (``*.db``) is opened read-only and immutable (nothing is ever written, no lock taken,
  no -wal read), as every database from a device is (:mod:`ethoscope_rsync.system.untrusted_sqlite`: the
  schema untrusted, limits, bounded memory, a deadline), and must pass ``PRAGMA integrity_check``.

Everything under a destination came from a device and is treated as hostile: only regular files
are read (symbolic links are never followed), each device's walk stays in its own
``<machine id>/`` folder, our hidden ``.ethoscope-backup*`` folders and hidden files (a pass's
temporary ones) are skipped, a file gone between listing and looking is not damage, a sidecar is read
for at most 64 KiB. A file that changes while it is hashed (a pass replaced it) is checked again
next time, not reported. Names and problems are printed escaped (:func:`ethoscope_rsync.system.logs.printable`):
rsync restores a name's control characters, and a name must not drive the operator's terminal.

Every database is checked, in the videos tree too. The run's ``[verify] time_limit`` is shared fairly
by the devices, and a device stopped by its share resumes where it stopped next time
(:mod:`ethoscope_rsync.backup.rotation`).

The last verification of each device is kept in ``verify.json`` in the state dir; the next pass
copies it into the history, where the status service, ``/metrics`` and ``status`` show it.
Exit: 0 all sound, 1 damaged files (each named) or stopped, 75 another verify is running.
"""
from __future__ import annotations

import dataclasses
import os
import re
import signal
import sys
import threading
import time

from ethoscope_rsync.backup import rotation
from ethoscope_rsync.system import untrusted_sqlite
from ethoscope_rsync.system.untrusted_sqlite import Stopped
from ethoscope_rsync.config.devices import ID_RE, NAME_RE, Device, selected
from ethoscope_rsync.system.exits import EXIT_BUSY, EXIT_FAILED, EXIT_OK, Busy
from ethoscope_rsync.render.humanize import human_size
from ethoscope_rsync.system.logs import log, printable
from ethoscope_rsync.state.model import DAMAGED_LISTED, KINDS
from ethoscope_rsync.state.history import Verification
from ethoscope_rsync.state.store import load_history, load_verifications, pass_lock, write_json_atomic
from ethoscope_rsync.state.model import DAY

HIDDEN_PREFIX = ".ethoscope-backup"
SIDECAR_LIMIT = 65536
DATABASE_DEADLINE = 3600.0        # seconds one integrity_check may take
BLOCK = 1 << 20

_MD5_LINE = re.compile(r"\\?([0-9a-fA-F]{32})(?:\s+\*?(.+))?")
_MD5_BSD = re.compile(r"MD5 ?\((.+)\) ?= ?([0-9a-fA-F]{32})")


def parse_md5(text: str, name: str) -> str | None:
    """The digest a sidecar gives for the file `name`: a bare digest, or the md5sum / BSD line
    naming that file (the first line when only one is given). Lower-case hex, or None."""
    found = []
    for line in text.splitlines()[:1000]:
        line = line.strip()
        match = _MD5_LINE.fullmatch(line)
        if match:
            found.append((match.group(1), match.group(2)))
            continue
        match = _MD5_BSD.fullmatch(line)
        if match:
            found.append((match.group(2), match.group(1)))
    for digest, named in found:
        if named is None or os.path.basename(named.strip()) == name:
            return digest.lower()
    return found[0][0].lower() if len(found) == 1 else None


# ---------------------------------------------------------------- the checks

def md5_of(path: str, stop: threading.Event) -> tuple:
    """(hex digest, whether the file changed while it was read)."""
    import hashlib      # here: a pass reads the verifications only, without loading libcrypto
    digest = hashlib.md5()
    with open(os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC), "rb", buffering=0) as handle:
        before = os.fstat(handle.fileno())
        while block := handle.read(BLOCK):
            digest.update(block)
            if stop.is_set():
                raise Stopped()
    after = os.stat(path, follow_symlinks=False)
    return digest.hexdigest(), (before.st_size, before.st_mtime_ns, before.st_ino) != (
        after.st_size, after.st_mtime_ns, after.st_ino)


def check_sidecar(path: str, sidecar: str, stop: threading.Event) -> str:
    """'' when `path` matches its sidecar, 'changed' when it changed meanwhile, else what is wrong."""
    try:
        with open(os.open(sidecar, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC), "rb") as handle:
            text = handle.read(SIDECAR_LIMIT).decode("utf-8", "replace")
    except OSError as error:
        return f"cannot read its .md5: {error.strerror}"
    expected = parse_md5(text, os.path.basename(path))
    if expected is None:
        return "its .md5 holds no checksum for it"
    if not os.path.lexists(path):
        return "missing (its .md5 is there)"
    try:
        actual, changed = md5_of(path, stop)
    except OSError as error:
        return f"cannot read: {error.strerror}"
    if changed:
        return "changed"
    return "" if actual == expected else f"checksum mismatch: md5 {actual}, its .md5 says {expected}"


def check_database(path: str, stop: threading.Event, deadline: float = DATABASE_DEADLINE) -> str:
    """'' when the database passes PRAGMA integrity_check, else what is wrong. Raises Stopped.
    Opened as every device database is (untrusted_sqlite: limits, memory, deadline)."""
    if os.path.islink(path):        # (the walk only lists regular files; rsync never makes links here)
        return "a symbolic link, not checked"
    return untrusted_sqlite.integrity_problem(path, deadline, stop)


# ---------------------------------------------------------------- walking a device's copies

@dataclasses.dataclass(frozen=True)
class Item:
    path: str            # absolute
    shown: str           # "videos/<machine id>/..." for people and the records
    size: int
    check: str           # "md5" or "database"


def device_items(roots: dict, machine_id: str, since: float) -> list:
    """What to check of one device: kind -> destination, only under <destination>/<machine_id>/."""
    items = []
    for kind, root in roots.items():
        top = os.path.join(root, machine_id)
        stack = [top]
        while stack:
            folder = stack.pop()
            try:
                with os.scandir(folder) as listing:
                    entries = sorted(listing, key=lambda e: e.name)
            except OSError:
                continue
            names = {e.name for e in entries}
            for entry in entries:
                if entry.name.startswith(HIDDEN_PREFIX):
                    continue
                if entry.is_dir(follow_symlinks=False):
                    stack.append(entry.path)
                    continue
                # hidden files are a pass's temporary ones (rsync's .NAME.XXXXXX, a recovery's
                # .NAME.recover-*): never checked, and they may be gone by now
                if entry.name.startswith(".") or not entry.is_file(follow_symlinks=False):
                    continue
                shown = f"{kind}/{os.path.relpath(entry.path, root)}"
                try:
                    stat = entry.stat(follow_symlinks=False)
                except OSError:         # gone since the folder was listed (no lock is shared with a pass)
                    continue
                if since and stat.st_mtime < since:
                    continue
                if entry.name.endswith(".md5"):
                    target = entry.name[:-4]
                    if target not in names:       # a sidecar without its file
                        items.append(Item(os.path.join(folder, target), shown[:-4], 0, "md5"))
                elif entry.name + ".md5" in names:
                    items.append(Item(entry.path, shown, stat.st_size, "md5"))
                elif entry.name.endswith(".db"):
                    items.append(Item(entry.path, shown, stat.st_size, "database"))
    return items


def check_item(item: Item, stop: threading.Event, deadline: float = DATABASE_DEADLINE) -> str:
    if item.check == "database":
        return check_database(item.path, stop, deadline)
    return check_sidecar(item.path, item.path + ".md5", stop)


# ---------------------------------------------------------------- the command

class _Bar:
    """A one-line progress bar on an interactive terminal, nothing otherwise."""

    def __init__(self, total: int, stream=sys.stderr):
        self.total, self.stream, self.done = max(total, 1), stream, 0
        self.enabled = stream.isatty()

    def show(self, done: int, what: str) -> None:
        """`what` names a file from a device: printed escaped (logs.printable), as a log line is."""
        if self.enabled:
            share = min(1.0, done / self.total)
            self.stream.write("\r\033[K[%-30s] %3.0f%% %s"
                              % ("#" * int(share * 30), share * 100, printable(what)[-60:]))
            self.stream.flush()

    def clear(self) -> None:
        if self.enabled:
            self.stream.write("\r\033[K")
            self.stream.flush()


def _carry_over(previous: Verification, record: Verification, checked: set) -> Verification:
    """A partial (--since) verification keeps the damage an earlier one found outside its window."""
    kept = [entry for entry in previous.damaged if entry[0] not in checked]
    unlisted = max(0, previous.damaged_count - len(previous.damaged))
    return dataclasses.replace(record, damaged=(record.damaged + kept)[:DAMAGED_LISTED],
                               damaged_count=record.damaged_count + len(kept) + unlisted)


def _devices(config) -> list:
    """(key, machine id, name) of the history's devices chosen by -e, with a machine id folder."""
    chosen = []
    for key, entry in load_history(config.history_file).devices.items():
        machine_id, name = entry.id or key, entry.name
        if not ID_RE.fullmatch(machine_id) or not NAME_RE.fullmatch(name):
            continue
        if selected(Device(name=name, address="", id=machine_id), config.selection):
            chosen.append((key, machine_id, name))
    return sorted(chosen, key=lambda d: d[2])


def verify(config, since_days: float, stop: threading.Event) -> int:
    """Check the chosen devices' copies; record each device's verification; exit code."""
    roots = {kind: str(config.destination(kind)) for kind in KINDS}
    since = time.time() - since_days * DAY if since_days else 0.0
    devices = _devices(config)
    if not devices:
        log.info("verify: no backed-up device%s to verify", " matches -e" if config.selection else "")
        return EXIT_OK
    records = load_verifications(config.verify_file)
    plan = [(d, rotation.resume(device_items(roots, d[1], since), records[d[0]].cursor if d[0] in records else ""))
            for d in devices]
    bar = _Bar(sum(i.size for _, items in plan for i in items))
    damaged_all, done, ends = [], 0, time.monotonic() + config.verify.time_limit
    for index, ((key, machine_id, name), items) in enumerate(plan):
        fields = {"DEVICE_ID": machine_id, "DEVICE_NAME": name}
        record, started = Verification(at=time.time()), time.monotonic()
        until, checked = started + rotation.share(ends - started, len(plan) - index), set()
        for item in items:
            bar.show(done, f"{name} {os.path.basename(item.path)}")
            seconds = rotation.allowed(DATABASE_DEADLINE, until, time.monotonic())
            try:
                if seconds is None:
                    raise Stopped()
                problem = check_item(item, stop, seconds)
            except Stopped:
                record = dataclasses.replace(record, complete=False)
                break
            done += item.size
            record.cursor = item.shown
            checked.add(item.shown)
            if problem == "changed":
                continue
            record = dataclasses.replace(record, files=record.files + 1, bytes=record.bytes + item.size)
            if problem:
                bar.clear()
                damaged_all.append((name, item.shown, problem))
                record.damaged.append([item.shown, problem])
                record = dataclasses.replace(record, damaged=record.damaged[:DAMAGED_LISTED],
                                             damaged_count=record.damaged_count + 1)
                log.error("%s: DAMAGED %s: %s", name, item.shown, problem,
                          extra=dict(fields, VERIFY_FILE=item.shown, VERIFY_RESULT="damaged"))
        bar.clear()
        if record.complete:
            record.cursor = ""
        if (since or not record.complete) and key in records:   # damage found before in files not checked stays
            record = _carry_over(records[key], record, checked)
        records[key] = dataclasses.replace(record, at=time.time())
        write_json_atomic(config.verify_file, {"schema": 1, "devices": {k: v.to_json() for k, v in records.items()}})
        (log.error if record.damaged_count else log.info)(
            "%s: verified %d file(s), %s in %.0fs: %s%s", name, record.files, human_size(record.bytes),
            time.monotonic() - started, f"{record.damaged_count} damaged" if record.damaged_count else "all sound",
            "" if record.complete else " (stopped before the end: the next verify goes on after %s)"
            % printable(record.cursor or "its first file"),
            extra=dict(fields, VERIFY_FILES=record.files, VERIFY_DAMAGED=record.damaged_count))
        if stop.is_set():
            break
    for name, shown, problem in damaged_all:
        print(f"DAMAGED {printable(name)} {printable(shown)}: {printable(problem)}")
    if stop.is_set():
        log.warning("verify: stopped before every device was checked")
    return EXIT_FAILED if damaged_all or stop.is_set() else EXIT_OK


def run_verify(config, since_days: float, stop: threading.Event | None = None) -> int:
    """``verify`` under its own lock (never the pass's): a second verify exits with 75. `stop` is set
    by SIGTERM/SIGINT from here on (the caller may go on checking with it)."""
    stopping = stop if stop is not None else threading.Event()

    def on_signal(signum, frame):
        log.warning("received %s: stopping the verification", signal.Signals(signum).name)
        stopping.set()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, on_signal)
    try:
        with pass_lock(config.paths.state_dir / "verify.lock"):      # the pass's kind of flock, on a file of its own
            return verify(config, since_days, stopping)
    except Busy:
        log.error("another verify is already running; this one exits without doing anything")
        return EXIT_BUSY
