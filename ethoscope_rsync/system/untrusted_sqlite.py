"""SQLite files that came from a device, opened on the node defensively, with limits and a deadline.

A device decides everything in its database files, including SQL that SQLite runs on the node
while it only checks them: ``PRAGMA integrity_check`` evaluates every generated column and index
expression, and on a writable connection every CHECK constraint, for every row. A file of a few kilobytes holding
``CHECK (length(hex(zeroblob(250000000))) > 0)`` costs 750 MB per row checked; one holding
``instr()`` of two long strings costs minutes of CPU per row (``bench/hostile_database.py`` has the
figures). So every connection to such a file (:func:`connect`) gets, before the schema is read:

* ``trusted_schema=OFF``: the schema may use only functions SQLite marks innocuous, and no virtual
  table that is not (application functions, ``load_extension``, ``fts3_tokenizer``, ...);
* limits (:data:`LIMITS`, ``sqlite3_limit``) far above anything an ethoscope database or the
  node's own statements need, far below what an attack needs: no value built larger than 16 KiB
  (the node's statements build none: an ethoscope's snapshots, stored values of any size, are
  never loaded, so they still pass), no schema statement longer than 10,000 bytes (an ethoscope's
  CREATE TABLE is ~200), no expression deeper than 10 or function with more than 8 arguments, no
  ATTACH, no trigger recursion. This also bounds the time of one step of SQLite's virtual machine:
  the slowest built-in functions are quadratic (``ltrim`` with a long set of characters, ``instr``,
  ``replace``), about 40 ms here on values of 16 KiB, against minutes on values of a few MB;
* a deadline (``[transfer] database_check_timeout``): a progress handler called every
  :data:`PROGRESS_STEPS` steps interrupts any statement once it has passed, so within a few
  seconds even when every step is one of the slowest;
* bounded memory: 4 MiB of page cache per connection, no memory-mapped I/O, cell sizes checked,
  and a hard heap limit of :data:`HEAP_LIMIT` for all of SQLite in the process
  (``sqlite3_hard_heap_limit64`` is process-wide: a pass's concurrent checks share it);
* defensive mode (``SQLITE_DBCONFIG_DEFENSIVE``, with triggers and views disabled) where Python's
  sqlite3 can set it: ``Connection.setconfig``, Python 3.12 and later. Debian 12's Python 3.11
  cannot call ``sqlite3_db_config`` at all, and reaching it through ``ctypes`` would mean reading
  CPython's private connection structure: we do not. What defensive mode forbids (writing the
  schema through ``writable_schema``, shadow tables, ``journal_mode=OFF``, ...) is reachable only
  through SQL the node runs, and the node runs only fixed statements (``integrity_check``,
  ``wal_checkpoint``, ``journal_mode=DELETE``, ``count(*)`` of ordinary tables); triggers, the only
  SQL of the database's own that runs on writes, never fire, because the node writes no row.

A statement stopped by any of these raises :class:`sqlite3.Error` (or ``MemoryError``, which is how
Python reports SQLite's out-of-memory); :func:`over_limits` tells those apart from a damaged file.
:func:`integrity_problem` checks a copy on the node this way (``verify``, and the second copy
before it sends a database no pass verified).
"""
from __future__ import annotations

import dataclasses
import os
import re
import sqlite3
import threading
import time
import urllib.parse

LIMITS = {
    sqlite3.SQLITE_LIMIT_LENGTH: 1 << 14,            # bytes of a value built (strings, blobs)
    sqlite3.SQLITE_LIMIT_SQL_LENGTH: 10_000,        # an ethoscope's CREATE TABLE is ~200 bytes
    sqlite3.SQLITE_LIMIT_COLUMN: 500,               # its tables have at most ~10 columns
    sqlite3.SQLITE_LIMIT_EXPR_DEPTH: 10,
    sqlite3.SQLITE_LIMIT_COMPOUND_SELECT: 3,
    sqlite3.SQLITE_LIMIT_VDBE_OP: 250_000,           # integrity_check of an ethoscope database: ~1,800
    sqlite3.SQLITE_LIMIT_FUNCTION_ARG: 8,
    sqlite3.SQLITE_LIMIT_ATTACHED: 0,
    sqlite3.SQLITE_LIMIT_LIKE_PATTERN_LENGTH: 100,
    sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER: 100,
    sqlite3.SQLITE_LIMIT_TRIGGER_DEPTH: 1,
    sqlite3.SQLITE_LIMIT_WORKER_THREADS: 0,
}
HEAP_LIMIT = 256 << 20
CACHE_KIB = 4096
PROGRESS_STEPS = 100             # ~0.1 ms of an honest check between two calls
PRAGMAS = ("trusted_schema=OFF", "cell_size_check=ON", "mmap_size=0", f"cache_size=-{CACHE_KIB}",
           f"hard_heap_limit={HEAP_LIMIT}")
_DEFENSIVE = ("SQLITE_DBCONFIG_DEFENSIVE", True), ("SQLITE_DBCONFIG_ENABLE_TRIGGER", False), \
    ("SQLITE_DBCONFIG_ENABLE_VIEW", False), ("SQLITE_DBCONFIG_TRUSTED_SCHEMA", False)
_LIMIT_WORDS = re.compile(r"too (?:big|large|long|many)|maximum depth", re.I)


@dataclasses.dataclass
class Budget:
    """The time one database may take, shared by every statement on it: the progress handler.
    `stop` (a threading.Event): a stop request interrupts too, without expiring the budget."""
    seconds: float
    started: float = dataclasses.field(default_factory=time.monotonic)
    expired: bool = False
    stop: threading.Event | None = None

    def __call__(self) -> int:
        if time.monotonic() - self.started > self.seconds:
            self.expired = True
        return int(self.expired or (self.stop is not None and self.stop.is_set()))


def defensive(con: sqlite3.Connection) -> bool:
    """Defensive mode, triggers and views off, where Python can set them (3.12+). Returns whether set."""
    setconfig = getattr(con, "setconfig", None)
    if setconfig is None:
        return False
    for name, value in _DEFENSIVE:
        if hasattr(sqlite3, name):          # (constants of the SQLite Python was built with)
            setconfig(getattr(sqlite3, name), value)
    return True


def connect(target: str, budget: Budget, *, uri: bool = False) -> sqlite3.Connection:
    """A connection to a device's database (a path, or a ``file:`` URI with `uri`), hardened as the
    module says before SQLite reads anything of the file. Raises sqlite3.Error."""
    con = sqlite3.connect(target, uri=uri, isolation_level=None)
    try:
        for limit, value in LIMITS.items():
            con.setlimit(limit, value)
        con.set_progress_handler(budget, PROGRESS_STEPS)
        defensive(con)
        for pragma in PRAGMAS:
            con.execute(f"PRAGMA {pragma}")
    except BaseException:
        con.close()
        raise
    return con


def over_limits(error: BaseException, budget: Budget) -> str:
    """Why a statement was stopped by the limits or the deadline ("" when it was not: e.g. a
    damaged file)."""
    if budget.expired:
        return f"took longer than the {budget.seconds:g}s allowed ([transfer] database_check_timeout)"
    if isinstance(error, MemoryError) or getattr(error, "sqlite_errorname", "") == "SQLITE_NOMEM":
        return f"needs more memory than allowed ({error or 'out of memory'})"
    if getattr(error, "sqlite_errorname", "") == "SQLITE_TOOBIG":
        return f"builds values larger than allowed ({error})"
    if _LIMIT_WORDS.search(str(error)):
        return f"exceeds the limits for a device's database ({error})"
    return ""


class Stopped(Exception):
    """A stop request or the deadline ended a check."""


def integrity_problem(path: str, deadline: float, stop: threading.Event) -> str:
    """'' when the database file `path` passes PRAGMA integrity_check, opened read-only and immutable
    (nothing written, no lock, no -wal read) as a device's; else what is wrong. Raises Stopped."""
    uri = "file:%s?mode=ro&immutable=1" % urllib.parse.quote(os.path.abspath(path), safe="/")
    budget = Budget(deadline, stop=stop)
    con = None
    try:
        con = connect(uri, budget, uri=True)
        rows = con.execute("PRAGMA integrity_check(20)").fetchall()
    except (sqlite3.Error, MemoryError) as error:     # MemoryError: SQLite's own, past its heap limit
        if stop.is_set():
            raise Stopped() from None
        if budget.expired:
            return f"integrity_check did not finish within {deadline:.0f}s"
        return f"not a sound database: {over_limits(error, budget) or error}"
    finally:
        if con is not None:
            con.close()
    if rows == [("ok",)]:
        return ""
    return "integrity_check: " + "; ".join(str(r[0]) for r in rows[:3])[:300]
