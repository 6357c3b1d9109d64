"""What the second copy sends: the node's results and videos destinations, as they are on disk.

Never sent: hidden files and folders (the raw database mirror and the old versions of ``--safe``
in ``.ethoscope-backup/``, rsync's interrupted files in ``.ethoscope-backup-partial/``, the
temporary files rsync and a database recovery write before renaming them into place), a
database's journal files, and — with ``[offsite] databases = verified`` — a database whose copy on
this node was never verified.

Nothing the pass puts in place is ever written in place: rsync writes a temporary file and renames
it, a recovered database is renamed over the old copy (livedb.recover_database). restic reads
each file through one open descriptor, so a snapshot taken while a pass runs holds, of every file,
the old copy or the new one, whole (tests/integration/test_offsite_lab.py shows it with a database
replaced in a loop while snapshots are taken). That is why the second copy may run beside a pass.

A database is verified when the pass's last recovery of it was (``DatabaseRecord.ok`` in the
history: in live mode nothing else is ever put in place under a database's name), or when the
ledger remembers this very copy (size and mtime) as verified: the device may have deleted it since
(its record is gone, the node's copy is the last one), or a later recovery may have failed (the
node kept the verified copy). Any other database (one the pass copied as a plain file, one left by
the upstream tool, one whose record a device's deletion removed before the second copy first saw
it) is checked here, once, as ``verify`` checks a copy (PRAGMA integrity_check, opened read-only as
a device's database: :func:`ethoscope_rsync.system.untrusted_sqlite.integrity_problem`): sent and
remembered when sound, held back and named when not.
"""
from __future__ import annotations

import dataclasses
import os
import threading
import time
from pathlib import Path

from ethoscope_rsync.state.offsite import HELD_LISTED, MAX_LEDGER

DATABASE = ".db"


@dataclasses.dataclass(frozen=True)
class Found:
    """A database file on the node: `path` relative to its destination, `kind` the destination's."""
    kind: str
    path: str
    size: int
    mtime_ns: int


@dataclasses.dataclass(frozen=True)
class Selection:
    roots: dict                      # kind -> absolute destination to send
    held_back: tuple                 # Found: databases not sent
    ledger: dict                     # the updated ledger: results path -> (size, mtime_ns)

    @property
    def sources(self) -> tuple:
        """The destinations, as restic is given them (results before videos)."""
        return tuple(str(self.roots[kind]) for kind in sorted(self.roots))

    def held_path(self, database: Found) -> str:
        return os.path.join(str(self.roots[database.kind]), database.path)

    @property
    def examples(self) -> list:
        return [f"{d.kind}/{d.path}" for d in self.held_back[:HELD_LISTED]]


def find_databases(kind: str, root: Path) -> list:
    """Every ``*.db`` under `root` that would be sent: regular files, hidden ones and hidden
    folders skipped (they are not sent), symbolic links never followed."""
    found, stack = [], [str(root)]
    while stack:
        folder = stack.pop()
        try:
            with os.scandir(folder) as listing:
                entries = list(listing)
        except OSError:           # gone or unreadable: restic says so for what it cannot read
            continue
        for entry in entries:
            if entry.name.startswith("."):
                continue
            if entry.is_dir(follow_symlinks=False):
                stack.append(entry.path)
            elif entry.name.endswith(DATABASE) and entry.is_file(follow_symlinks=False):
                try:
                    info = entry.stat(follow_symlinks=False)
                except OSError:
                    continue
                found.append(Found(kind, os.path.relpath(entry.path, root), info.st_size, info.st_mtime_ns))
    return sorted(found, key=lambda d: (d.kind, d.path))


def verified_records(history) -> dict:
    """Results paths whose last recovery on this node was verified (from the devices' histories)."""
    return {path: record for entry in history.devices.values() for path, record in entry.databases.items()
            if record.ok}


def ledger_key(database: Found) -> str:
    """The ledger's key: the path under the results destination (as the history's records), else kind:path."""
    return database.path if database.kind == "results" else f"{database.kind}:{database.path}"


def check_held(selection: Selection, check, seconds_each: float, stop: threading.Event, until: float) -> tuple:
    """Check the databases held back (``check(path, seconds, stop)`` -> '' when sound): the sound ones
    are sent and remembered, the others stay held back. Until the monotonic time `until` (those not
    reached wait for the next run). -> (the new selection, [(Found, what is wrong)])."""
    from ethoscope_rsync.system.untrusted_sqlite import Stopped      # sqlite3: only when there is a check
    held, ledger, damaged = [], dict(selection.ledger), []
    for database in selection.held_back:
        if stop.is_set() or time.monotonic() >= until:
            held.append(database)
            continue
        try:
            problem = check(selection.held_path(database), min(seconds_each, max(1.0, until - time.monotonic())),
                            stop)
        except Stopped:
            held.append(database)
            continue
        if problem:
            held.append(database)
            damaged.append((database, problem))
        else:
            ledger[ledger_key(database)] = (database.size, database.mtime_ns)
    return dataclasses.replace(selection, held_back=tuple(held), ledger=ledger), damaged


def select(roots: dict, databases: str, history, ledger: dict, found: list) -> Selection:
    """`roots`: kind -> destination; `databases`: [offsite] databases; `found`: find_databases()
    of every root. Databases held back, and the ledger with what is verified now."""
    verified = verified_records(history)
    seen, kept, held = {}, dict(ledger), []
    for database in found:
        key = ledger_key(database)
        stamp = (database.size, database.mtime_ns)
        seen[key] = True
        if database.kind == "results" and database.path in verified:
            kept[key] = stamp
        elif kept.get(key) != stamp and databases == "verified":
            held.append(database)
    ledger = {key: stamp for key, stamp in kept.items() if key in seen}
    if len(ledger) > MAX_LEDGER:
        ledger = dict(sorted(ledger.items())[-MAX_LEDGER:])
    return Selection(dict(roots), tuple(held), ledger)
