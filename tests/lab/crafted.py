"""Databases a hostile device crafts: small files whose checking costs the node memory or CPU.

``PRAGMA integrity_check`` evaluates, for every row, the CHECK constraints, generated columns and
index expressions written in the file's schema. Each database here is an ordinary ethoscope
database (tests/lab/data.py) plus one table whose schema makes that evaluation expensive:

* ``memory``: ``length(hex(zeroblob(250000000)))`` builds a 250 MB blob and a 500 MB string per row;
* ``cpu``: ``ltrim()`` of a 16,000-character string by a set of 1,300 characters, quadratic:
  about 40 ms of CPU per row here, within the node's limit on values built (16 KiB);
* ``big``: ``instr()`` of two strings of 800 and 400 thousand characters that differ only in their
  last one: about 3 s of CPU per row;
* ``deep``: an expression nested deeper than any honest schema.

The expensive expression sits in a CHECK constraint, a virtual generated column or an index
expression (`construct`). The table is created and filled plainly, then its definition (or its
index's) is rewritten through ``writable_schema``, as an attacker would: crafting evaluates
nothing, and a file of 100 rows holding hours of CPU is a few kilobytes larger than the honest
database.
"""
import sqlite3
from pathlib import Path

from .data import _make_db

EXPENSIVE = {          # each depends on the row (v): SQLite would evaluate a constant only once
    "memory": "length(hex(zeroblob(250000000 + v % 2)))",
    "cpu": "length(ltrim(printf('%.*c', 16000 + v % 2, 'y'), printf('%.*c', 1300, 'a') || 'y'))",
    "big": "instr(hex(zeroblob(400000 + v % 2)) || '1', hex(zeroblob(200000)) || '1')",
    "deep": "(" * 40 + "v" + " + 1)" * 40,
}
CONSTRUCTS = ("check", "generated", "index")


def craft(path, device, ts, kind="cpu", construct="check", rows=100, honest_rows=200):
    """An ethoscope database at `path` (as `device` writes it; one already there is replaced) with a
    hostile table ROI_99."""
    expression = EXPENSIVE[kind]
    for suffix in ("", "-wal", "-shm"):
        Path(str(path) + suffix).unlink(missing_ok=True)
    _make_db(path, device, ts, honest_rows)
    definition = {
        "check": f"CREATE TABLE ROI_99 (id INTEGER PRIMARY KEY, v INTEGER, CHECK (({expression}) >= 0))",
        "generated": f"CREATE TABLE ROI_99 (id INTEGER PRIMARY KEY, v INTEGER, g INTEGER AS ({expression}) VIRTUAL)",
        "index": f"CREATE INDEX ROI_99_v ON ROI_99 (({expression}))",
    }[construct]
    con = sqlite3.connect(str(path), isolation_level=None)
    try:
        con.execute("CREATE TABLE ROI_99 (id INTEGER PRIMARY KEY, v INTEGER)")
        con.execute("CREATE INDEX ROI_99_v ON ROI_99 ((v + 0))")
        con.execute("BEGIN")
        con.executemany("INSERT INTO ROI_99 (v) VALUES (?)", [(k,) for k in range(rows)])
        con.execute("COMMIT")
        con.execute("PRAGMA writable_schema=ON")
        con.execute("UPDATE sqlite_master SET sql = ? WHERE name = ?",
                    (definition, "ROI_99_v" if construct == "index" else "ROI_99"))
        con.execute("PRAGMA writable_schema=OFF")
    finally:
        con.close()
    return path
