"""Consistent copies of live ethoscope databases, with nothing written on the device.

An ethoscope writes its results database for days in WAL mode. Copying the ``.db`` alone misses the
rows still in the ``-wal`` and, if a checkpoint runs during the copy, gives a torn file. Snapshots made
on the device (``.backup``, ``VACUUM INTO``) rewrite the whole database on the SD card every time.

The method used here (README.md, "Live databases", has the measured figures):

1. A *holder* runs on the device (``HOLDER_SCRIPT``, stdlib Python 3.7+). For every ``*.db`` that has
   a ``-wal`` and a ``-shm`` (i.e. a connection may be live) it opens a **read-only** connection
   (``mode=ro`` URI: it can never write the db or the wal, and never checkpoints or deletes the wal on
   close) and starts a read transaction. While that reader is held SQLite may not checkpoint past the
   reader's end mark, and may not restart the WAL over frames the reader depends on:

   * reader on a WAL read-lock > 0 (WAL not fully backfilled, end mark M): a checkpoint can still copy
     frames <= M into the ``.db`` (so the ``.db`` may change during the copy), but frames 1..M stay in
     the ``-wal`` with the same salts; new commits are appended after M.
   * reader on read-lock 0 (everything backfilled): no checkpoint can write the ``.db`` at all; the
     writer may restart the WAL once (new salts) and overwrite it from the start.

   In both cases replaying the valid frames of a copied ``-wal`` onto a copied ``.db`` gives every
   page of the held snapshot or a later committed state: every ``.db`` page the checkpoint may touch
   is rewritten by a frame <= M that is still in the copied ``-wal``; torn, overwritten or stale
   frames fail the salt/checksum chain and end the replay at the last good commit.
2. The device's job rsyncs ``*.db`` and ``*.db-wal`` into a raw staging mirror while the holder holds,
   then closes the holder's stdin (it releases and exits, having written nothing).
3. ``recover_database`` opens a copy of the raw pair on the node (SQLite replays the WAL), checks it,
   turns it into a self-contained rollback-journal file and atomically replaces the node's copy
   only if the copy is sound and not older than the one it replaces. The files came from the device:
   they are opened defensively, with limits and a deadline (:mod:`ethoscope_rsync.system.untrusted_sqlite`);
   one that exceeds them is "not verified" and the node's copy stays.

Two rules for the runner's raw rsync (:func:`ethoscope_rsync.backup.rsync.make_rsync_command`, "raw";
``RAW_FILTER_ARGS`` is the same for a whole tree), both found by experiment:

* ``--delete`` in the raw mirror: if the device's ``-wal`` disappears (database closed cleanly), a
  stale raw ``-wal`` left in the mirror would be replayed over the newer ``.db`` and corrupt it.
* rsync's quick check compares mtimes in whole seconds: a raw file copied in the same second as a
  later same-size change on the device (typical of a ``-wal`` being reused in place) would be skipped
  next time, pairing a stale file with a fresh one. ``forget_mtimes`` (after each pass, on the raw
  files of held databases) makes the next pass always re-check them.

Nothing here runs processes; the runner does.
"""
import dataclasses
import json
import os
import shlex
import shutil
import sqlite3
import time
from pathlib import Path
from typing import Dict, Iterable, Optional, Sequence, Tuple

from ethoscope_rsync.system import untrusted_sqlite

__all__ = [
    "HOLDER_SCRIPT", "READY_PREFIX", "DONE_PREFIX", "HOLDER_TIMEOUT_EXIT", "RAW_RSYNC_ARGS", "RAW_FILTER_ARGS",
    "HoldResult", "Verdict", "make_holder_command", "parse_holder_ready", "count_rows",
    "recover_database", "forget_mtimes",
]

READY_PREFIX = "ETHOSCOPE-BACKUP-HOLD "
DONE_PREFIX = "ETHOSCOPE-BACKUP-RELEASED "
HOLDER_TIMEOUT_EXIT = 3       # holder released because max_hold_seconds passed, not because of EOF

# rsync options for step 3 (device results -> <dest>/.ethoscope-backup/raw/), see module docstring.
RAW_FILTER_ARGS = (
    "--delete", "--modify-window=-1",
    "--include=*/", "--include=*.db", "--include=*.db-wal", "--exclude=*",
)
RAW_RSYNC_ARGS = ("--recursive", "--times") + RAW_FILTER_ARGS    # a standalone raw copy (tests, bench)

# The device side. Python 3.7+ stdlib only; argv: ROOT MAX_HOLD_SECONDS. Never opens anything
# writable: mode=ro connections, no -shm creation (databases without -shm are reported "idle").
HOLDER_SCRIPT = r'''
import json, os, select, sqlite3, sys, time
try:
    from urllib.parse import quote
except ImportError:
    from urllib import quote

def hold(path):
    uri = "file:" + quote(os.path.abspath(path), safe="/") + "?mode=ro"
    con = sqlite3.connect(uri, uri=True, timeout=2.0, isolation_level=None)
    try:
        con.execute("BEGIN")
        con.execute("SELECT count(*) FROM sqlite_master").fetchone()
    except sqlite3.Error:
        con.close()
        raise
    return con

def main():
    root, max_hold = sys.argv[1], float(sys.argv[2])
    held, failed, idle, cons = [], {}, [], []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted(filenames):
            if not name.endswith(".db"):
                continue
            path = os.path.join(dirpath, name)
            rel = os.path.relpath(path, root).replace(os.sep, "/")
            if not os.path.exists(path + "-wal"):
                continue          # no live WAL connection: the file is stable
            if not os.path.exists(path + "-shm"):
                idle.append(rel)  # no live connection; opening would create -shm: leave it alone
                continue
            deadline = time.time() + 5.0
            while True:
                try:
                    cons.append(hold(path))
                    held.append(rel)
                    break
                except (sqlite3.Error, OSError) as e:     # busy, locked, unreadable: try for 5 s
                    if time.time() >= deadline:
                        failed[rel] = "%s: %s" % (type(e).__name__, e)
                        break
                    time.sleep(0.25)
    info = {"held": held, "failed": failed, "idle": idle, "pid": os.getpid(),
            "sqlite": sqlite3.sqlite_version, "max_hold": max_hold}
    sys.stdout.write("ETHOSCOPE-BACKUP-HOLD " + json.dumps(info, sort_keys=True) + "\n")
    sys.stdout.flush()
    start = time.time()
    reason = "eof"
    fd = sys.stdin.fileno()
    while True:
        left = start + max_hold - time.time()
        if left <= 0:
            reason = "timeout"
            break
        r = select.select([fd], [], [], min(left, 30.0))[0]
        if r and not os.read(fd, 65536):
            break
    for con in cons:
        try:
            con.execute("ROLLBACK")
        except sqlite3.Error:
            pass
        con.close()
    try:
        sys.stdout.write("ETHOSCOPE-BACKUP-RELEASED " + json.dumps(
            {"reason": reason, "held_seconds": round(time.time() - start, 3)}) + "\n")
        sys.stdout.flush()
    except (OSError, ValueError):      # the node went away (a broken pipe, a closed stdout): nothing to tell
        pass
    return 0 if reason == "eof" else 3

sys.exit(main())
'''


@dataclasses.dataclass(frozen=True)
class HoldResult:
    """The holder's ready line. Paths are relative to remote_root, with '/' separators."""
    held: Tuple[str, ...]              # read transaction held: copy db + wal now
    failed: Dict[str, str]             # could not hold (busy, unreadable...): reason; copy is unsafe
    idle: Tuple[str, ...] = ()         # -wal without -shm: no live connection, pair is stable
    pid: Optional[int] = None
    sqlite: str = ""

    @property
    def with_wal(self) -> Tuple[str, ...]:
        """Databases whose raw -wal belongs with the raw .db in this pass."""
        return tuple(sorted(self.held + self.idle))


@dataclasses.dataclass(frozen=True)
class Verdict:
    ok: bool
    rows: int
    message: str
    replaced: bool
    over_limits: bool = False     # stopped by the limits or the deadline: trying again now will not help


def make_holder_command(ssh_argv: Sequence[str], remote_python: str, remote_root: str,
                        max_hold_seconds: float = 900) -> Tuple[str, ...]:
    """argv running the holder on the device: ssh argv + ONE remote command string.

    ssh hands that string to the remote user's (POSIX) shell; every word is shlex-quoted, so a
    remote_root with spaces, quotes or ``$(...)`` reaches the script unchanged.
    """
    words = [remote_python, "-c", HOLDER_SCRIPT, remote_root, "%g" % float(max_hold_seconds)]
    return tuple(ssh_argv) + (" ".join(shlex.quote(str(w)) for w in words),)


def parse_holder_ready(line) -> Optional[HoldResult]:
    """Parse the holder's ready line; None for anything else (banner, garbage, truncated JSON)."""
    if isinstance(line, bytes):
        line = line.decode("utf-8", "replace")
    line = line.strip()
    if not line.startswith(READY_PREFIX.strip()):
        return None
    try:
        data = json.loads(line[len(READY_PREFIX.strip()):])
    except ValueError:
        return None
    if not isinstance(data, dict):
        return None
    held, failed, idle = data.get("held"), data.get("failed", {}), data.get("idle", [])
    if not (isinstance(held, list) and isinstance(failed, dict) and isinstance(idle, list)
            and all(isinstance(p, str) for p in held + idle + list(failed))):
        return None
    pid = data.get("pid")
    return HoldResult(held=tuple(held), failed={k: str(v) for k, v in failed.items()}, idle=tuple(idle),
                      pid=pid if isinstance(pid, int) else None, sqlite=str(data.get("sqlite", "")))


def _uri(path: Path, **params) -> str:
    from urllib.parse import quote
    query = "&".join("%s=%s" % kv for kv in params.items())
    return "file:" + quote(str(Path(path).resolve()), safe="/") + ("?" + query if query else "")


def _count(con: sqlite3.Connection) -> int:
    """Rows of the ordinary tables (a virtual table's module is never called)."""
    names = [r[0] for r in con.execute(
        "SELECT name FROM sqlite_master WHERE type='table' AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\'"
        " AND coalesce(sql, '') NOT LIKE 'CREATE VIRTUAL%'")]
    return sum(con.execute('SELECT count(*) FROM "%s"' % n.replace('"', '""')).fetchone()[0] for n in names)


def _count_rows(path: Path, budget: untrusted_sqlite.Budget) -> int:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(str(path))
    wal = Path(str(path) + "-wal")
    uri = _uri(path, mode="ro") if wal.exists() else _uri(path, mode="ro", immutable=1)
    con = untrusted_sqlite.connect(uri, budget, uri=True)
    try:
        return _count(con)
    finally:
        con.close()


def count_rows(path: Path, check_timeout: float) -> int:
    """Sum of count(*) over the user tables, read-only and defensively (see untrusted_sqlite).
    Raises sqlite3.DatabaseError if unreadable, or past the limits or `check_timeout` seconds.

    A lone file is opened immutable (nothing created next to it); one with a -wal beside it is
    opened mode=ro so the wal's rows count too.
    """
    return _count_rows(path, untrusted_sqlite.Budget(check_timeout))


def _fsync(path: Path, directory: bool = False) -> None:
    fd = os.open(str(path), os.O_RDONLY | (os.O_DIRECTORY if directory else 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _unlink(*paths: Path) -> None:
    for p in paths:
        try:
            os.unlink(str(p))
        except FileNotFoundError:
            pass


def _same_content(a: Path, b: Path) -> bool:
    import filecmp
    return b.is_file() and a.stat().st_size == b.stat().st_size and filecmp.cmp(str(a), str(b), shallow=False)


def recover_database(raw_db: Path, raw_wal: Optional[Path], dest_db: Path,
                     check_timeout: float, previous_rows: Optional[int] = None,
                     stop=None) -> Verdict:
    """Rebuild dest_db from a raw .db (+ -wal) copy; replace it atomically only if sound and not older.

    The raw files are only read. Work happens in a hidden temp file beside dest_db (same filesystem)
    which is removed on any failure, leaving dest_db untouched. Every SQLite file is opened as a
    device's (untrusted_sqlite), and all of it together may take `check_timeout` seconds; `stop`
    (a threading.Event) set interrupts it at once (the pass is being stopped).
    """
    budget = untrusted_sqlite.Budget(check_timeout, stop=stop)
    raw_db, dest_db = Path(raw_db), Path(dest_db)
    raw_wal = Path(raw_wal) if raw_wal is not None else None
    dest_db.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest_db.parent / (".%s.recover-%d-%d" % (dest_db.name, os.getpid(), time.monotonic_ns()))
    side = [Path(str(tmp) + s) for s in ("-wal", "-shm", "-journal")]
    try:
        if not raw_db.is_file():
            return Verdict(False, 0, "raw database %s missing" % raw_db, False)
        has_wal = raw_wal is not None and raw_wal.is_file() and raw_wal.stat().st_size > 0
        if raw_db.stat().st_size == 0 and has_wal:
            return Verdict(False, 0, "raw database is empty but has a wal (not yet initialised)", False)
        shutil.copyfile(str(raw_db), str(tmp))
        if has_wal:
            shutil.copyfile(str(raw_wal), str(side[0]))
        con = untrusted_sqlite.connect(str(tmp), budget)
        try:
            result = [r[0] for r in con.execute("PRAGMA integrity_check")]
            if result != ["ok"]:
                return Verdict(False, 0, "integrity_check failed: %s" % "; ".join(map(str, result[:5])), False)
            busy = con.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0]
            mode = con.execute("PRAGMA journal_mode=DELETE").fetchone()[0]
            if busy or str(mode).lower() != "delete":
                return Verdict(False, 0, "could not make a self-contained file (busy=%s mode=%s)" % (busy, mode),
                               False)
            rows = _count(con)
        finally:
            con.close()
        if any(p.exists() for p in side[:2]):
            return Verdict(False, rows, "wal/shm left after conversion", False)

        floor, why = previous_rows, "previous pass"
        if floor is None and dest_db.exists():
            try:
                floor, why = _count_rows(dest_db, budget), "existing copy"
            except sqlite3.DatabaseError:
                if budget.expired:     # not known to be unreadable: only out of time
                    raise
                floor = None           # the existing copy is unreadable: a sound copy may replace it
        if floor is not None and rows < floor:
            return Verdict(False, rows, "refused: %d rows < %d in %s" % (rows, floor, why), False)
        if _same_content(tmp, dest_db):
            return Verdict(True, rows, "unchanged (%d rows)" % rows, False)

        st = raw_db.stat()
        mtime = max(st.st_mtime_ns, raw_wal.stat().st_mtime_ns if raw_wal is not None and has_wal else 0)
        os.chmod(str(tmp), st.st_mode & 0o666)
        os.utime(str(tmp), ns=(st.st_atime_ns, mtime))
        _fsync(tmp)
        # stale journals next to dest would be replayed over the new file by the next reader
        _unlink(*[Path(str(dest_db) + s) for s in ("-wal", "-shm", "-journal")])
        os.replace(str(tmp), str(dest_db))
        _fsync(dest_db.parent, directory=True)
        return Verdict(True, rows, "recovered %d rows" % rows, True)
    except (sqlite3.Error, MemoryError) as e:      # MemoryError: SQLite's own, past its heap limit
        if stop is not None and stop.is_set() and not budget.expired:
            return Verdict(False, 0, "stopped before it was verified", False)
        why = untrusted_sqlite.over_limits(e, budget)
        if why:
            return Verdict(False, 0, "not verified: " + why, False, over_limits=True)
        return Verdict(False, 0, "%s: %s" % (type(e).__name__, e), False)
    except OSError as e:
        return Verdict(False, 0, "%s: %s" % (type(e).__name__, e), False)
    finally:
        _unlink(tmp, *side)


def forget_mtimes(raw_paths: Iterable[Path]) -> list:
    """After a pass: set the mtime of the raw files of held (live) databases to 0 (1970).

    rsync's quick check compares size and mtime (whole seconds by default; device and node clocks may
    also disagree). A live -wal is reused in place at constant size, so a change made in the same
    mtime tick as the copy would be skipped next pass, pairing a stale raw file with a fresh one.
    With mtime 0 the next pass always delta-checks these files (rsync reads them on the device
    anyway whenever they changed, which live ones nearly always have). Once a database is no longer
    live it is not held, its raw files keep the device's mtime and quick checks skip it again.
    Returns the paths reset.
    """
    reset = []
    for p in raw_paths:
        try:
            os.utime(str(p), (0, 0))
            reset.append(p)
        except FileNotFoundError:
            pass
    return reset
