"""A device's database opened on the node: limits, deadline, memory (ethoscope_rsync.backup.untrusted_sqlite
and its use by livedb). Crafted databases come from tests/lab/crafted.py; costs are measured in a
fresh process (its CPU time and peak RSS), never as wall time."""
import json
import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ethoscope_rsync.backup import livedb
from ethoscope_rsync.backup import untrusted_sqlite
from tests.lab.crafted import CONSTRUCTS, craft
from tests.lab.data import _make_db

ROOT = Path(__file__).resolve().parents[3]
TS = "2024-03-01_09-00-00"


class Device:
    id = "a" * 32
    name = "ETHOSCOPE_001"


def recover_in_a_fresh_process(raw_db, dest, check_timeout):
    """livedb.recover_database in its own process -> (verdict fields, CPU seconds, peak RSS in MB)."""
    # VmHWM: the peak of this process's own memory (ru_maxrss would carry over its parent's at exec)
    code = ("import json, re, resource, sys, time; from ethoscope_rsync.backup import livedb\n"
            "v = livedb.recover_database(sys.argv[1], None, sys.argv[2], check_timeout=float(sys.argv[3]))\n"
            "u = resource.getrusage(resource.RUSAGE_SELF)\n"
            "peak = int(re.search(r'VmHWM:\\s+(\\d+)', open('/proc/self/status').read()).group(1)) / 1024\n"
            "print(json.dumps([v.ok, v.over_limits, v.message, u.ru_utime + u.ru_stime, peak]))")
    out = subprocess.run([sys.executable, "-c", code, str(raw_db), str(dest), str(check_timeout)], cwd=ROOT,
                         capture_output=True, text=True, timeout=300, check=True).stdout
    ok, over, message, cpu, rss = json.loads(out)
    return (ok, over, message), cpu, rss


def node_copy(tmp_path, rows=200):
    """The node's current copy of the device's database (a sound one, as an earlier pass left it)."""
    dest = tmp_path / "node" / f"{TS}_{Device.id}.db"
    dest.parent.mkdir(parents=True)
    _make_db(dest, Device, TS, rows)
    return dest


def test_an_honest_database_passes_with_every_limit(tmp_path):
    raw = tmp_path / "raw.db"
    _make_db(raw, Device, TS, 2000)
    con = sqlite3.connect(raw)
    con.execute("INSERT INTO IMG_SNAPSHOTS (t, img) VALUES (1, ?)", (os.urandom(3 << 20),))  # a big snapshot
    con.commit()
    con.close()
    verdict = livedb.recover_database(raw, None, tmp_path / "node.db", check_timeout=5)
    assert (verdict.ok, verdict.rows, verdict.over_limits) == (True, 2000 + 11 + 20 + 8 + 1 + 2, False)
    assert livedb.count_rows(tmp_path / "node.db", check_timeout=300.0) == verdict.rows


@pytest.mark.parametrize("construct", CONSTRUCTS)
def test_a_memory_bomb_is_not_verified_at_once(tmp_path, construct):
    """Two rows that cost 1.2 GB and 2 s of CPU to check with SQLite's defaults."""
    dest = node_copy(tmp_path)
    before = dest.read_bytes()
    raw = craft(tmp_path / "raw.db", Device, TS, "memory", construct, rows=2, honest_rows=500)
    (ok, over, message), cpu, rss = recover_in_a_fresh_process(raw, dest, 60)
    print(f"memory bomb ({construct}): {cpu:.2f} s CPU, {rss:.0f} MB peak RSS")
    assert (ok, over) == (False, True) and message.startswith("not verified: builds values larger than allowed")
    assert cpu < 2 and rss < 100
    assert dest.read_bytes() == before


@pytest.mark.parametrize("construct", CONSTRUCTS)
def test_a_cpu_bomb_is_stopped_at_the_deadline(tmp_path, construct):
    """100,000 rows (2.6 MB) that cost about an hour of CPU to check with SQLite's defaults."""
    dest = node_copy(tmp_path)
    before = dest.read_bytes()
    raw = craft(tmp_path / "raw.db", Device, TS, "cpu", construct, rows=100_000)
    (ok, over, message), cpu, rss = recover_in_a_fresh_process(raw, dest, 1)
    print(f"CPU bomb ({construct}): {cpu:.2f} s CPU, {rss:.0f} MB peak RSS")
    assert (ok, over) == (False, True)
    assert message == "not verified: took longer than the 1s allowed ([transfer] database_check_timeout)"
    assert cpu < 5 and rss < 100
    assert dest.read_bytes() == before


@pytest.mark.parametrize("kind", ["big", "deep"])
def test_values_and_expressions_past_the_limits_are_refused(tmp_path, kind):
    raw = craft(tmp_path / "raw.db", Device, TS, kind, "check", rows=3)
    started = time.process_time()
    verdict = livedb.recover_database(raw, None, tmp_path / "node.db", check_timeout=60)
    assert time.process_time() - started < 1
    assert not verdict.ok and verdict.over_limits and verdict.message.startswith("not verified: ")
    assert not (tmp_path / "node.db").exists()


def test_a_copy_checked_past_its_deadline_never_replaces_a_bigger_one(tmp_path, monkeypatch):
    """The deadline running out while the node's copy is counted is no licence to replace it."""
    dest = node_copy(tmp_path, rows=5000)
    before = dest.read_bytes()
    raw = tmp_path / "raw.db"
    _make_db(raw, Device, TS, 10)
    real = livedb._count_rows

    def slow(path, budget):
        budget.started -= budget.seconds + 1          # the new copy's check used up all the time
        return real(path, budget)
    monkeypatch.setattr(livedb, "_count_rows", slow)
    verdict = livedb.recover_database(raw, None, dest, check_timeout=30)
    assert not verdict.ok and verdict.over_limits and "took longer" in verdict.message
    assert dest.read_bytes() == before


def test_attach_and_schema_tricks_are_limited(tmp_path):
    path = tmp_path / "x.db"
    _make_db(path, Device, TS, 10)
    con = untrusted_sqlite.connect(str(path), untrusted_sqlite.Budget(10))
    try:
        with pytest.raises(sqlite3.OperationalError, match="too many attached databases"):
            con.execute("ATTACH DATABASE ':memory:' AS other")
        assert con.execute("PRAGMA trusted_schema").fetchone() == (0,)
        assert con.execute("PRAGMA mmap_size").fetchone() == (0,)
        assert con.execute("PRAGMA cell_size_check").fetchone() == (1,)
        assert con.execute("PRAGMA cache_size").fetchone() == (-untrusted_sqlite.CACHE_KIB,)
        assert con.execute("PRAGMA hard_heap_limit").fetchone()[0] <= untrusted_sqlite.HEAP_LIMIT
        assert untrusted_sqlite.defensive(con) == hasattr(con, "setconfig")   # Python 3.12+
    finally:
        con.close()


def test_virtual_tables_are_not_counted(tmp_path):
    path = tmp_path / "x.db"
    _make_db(path, Device, TS, 10)
    con = sqlite3.connect(path)
    con.execute("CREATE VIRTUAL TABLE notes USING fts5(body)")
    con.execute("INSERT INTO notes VALUES ('x')")
    con.commit()
    con.close()
    plain = sqlite3.connect(path)
    shadow = sum(plain.execute(f'SELECT count(*) FROM "{name}"').fetchone()[0] for (name,) in plain.execute(
        "SELECT name FROM sqlite_master WHERE type='table' AND name LIKE 'notes\\_%' ESCAPE '\\'"))
    plain.close()
    assert livedb.count_rows(path, check_timeout=300.0) == 10 + 20 + 11 + 8 + 1 + 1 + shadow


def test_what_stopped_a_statement():
    budget = untrusted_sqlite.Budget(5, started=time.monotonic())
    assert untrusted_sqlite.over_limits(sqlite3.DatabaseError("file is not a database"), budget) == ""
    assert untrusted_sqlite.over_limits(MemoryError(), budget).startswith("needs more memory")
    assert untrusted_sqlite.over_limits(sqlite3.OperationalError("too many columns on t"), budget)
    assert budget() == 0 and not budget.expired
    budget.started -= 6
    assert budget() == 1 and budget.expired
    assert untrusted_sqlite.over_limits(sqlite3.OperationalError("interrupted"), budget).startswith(
        "took longer than the 5s allowed")
