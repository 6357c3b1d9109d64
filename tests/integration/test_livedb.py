"""Live-database copies with the holder, against a real writer process, real rsync and the real holder.

The writer appends one row to each of 4 ROI tables per transaction (every ~10 ms), so a consistent
database has equal counts in all ROI tables; after each commit it records its committed-transaction
count in a side file. Each pass: start the holder, read the committed count, rsync the raw pair
(delta mode, partly rate-limited so checkpoints happen mid-copy), release, recover on the "node".
"""
import os
import select
import shutil
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ethoscope_rsync import livedb

PY = "/usr/bin/python3"
TABLES = 4
WRITER = r'''
import os, sqlite3, sys, time
db, counter = sys.argv[1], sys.argv[2]
con = sqlite3.connect(db, isolation_level=None, timeout=30)
con.execute("PRAGMA busy_timeout=30000")
con.execute("PRAGMA journal_mode=WAL")
con.execute("PRAGMA synchronous=NORMAL")
for i in range(1, %(tables)d + 1):
    con.execute("CREATE TABLE IF NOT EXISTS ROI_%%d (id INTEGER PRIMARY KEY, t INTEGER, x INTEGER, blob BLOB)" %% i)
con.execute("CREATE TABLE IF NOT EXISTS METADATA (field TEXT, value TEXT)")
n = 0
while True:
    con.execute("BEGIN IMMEDIATE")
    for i in range(1, %(tables)d + 1):
        con.execute("INSERT INTO ROI_%%d (t, x, blob) VALUES (?,?,?)" %% i, (n, n * 7 %% 613, os.urandom(120)))
    con.execute("COMMIT")
    n += 1
    tmp = counter + ".tmp"
    with open(tmp, "w") as f:
        f.write("%%d\n" %% n)
    os.rename(tmp, counter)
    time.sleep(0.01)
''' % {"tables": TABLES}


def committed(counter: Path) -> int:
    for _ in range(100):
        try:
            return int(counter.read_text())
        except (FileNotFoundError, ValueError):
            time.sleep(0.01)
    raise AssertionError("no counter")


def roi_counts(path: Path):
    con = sqlite3.connect("file:%s?mode=ro&immutable=1" % path, uri=True)
    try:
        return [con.execute("SELECT count(*) FROM ROI_%d" % i).fetchone()[0] for i in range(1, TABLES + 1)]
    finally:
        con.close()


def readline(proc, timeout=10.0) -> str:
    ready = select.select([proc.stdout], [], [], timeout)[0]
    assert ready, "holder gave no ready line in %ss" % timeout
    return proc.stdout.readline().decode()


@pytest.fixture
def live(tmp_path):
    root = tmp_path / "device" / "results"
    exp = root / ("0" * 32) / "ETHOSCOPE_001" / "2025-01-01_00-00-00"
    exp.mkdir(parents=True)
    db = exp / ("2025-01-01_00-00-00_%s.db" % ("0" * 32))
    counter = tmp_path / "committed"
    proc = subprocess.Popen([PY, "-c", WRITER, str(db), str(counter)])
    try:
        deadline = time.time() + 10
        while time.time() < deadline and not (counter.exists() and committed(counter) > 300):
            time.sleep(0.05)
        assert committed(counter) > 300, "writer did not start"
        yield root, db, counter
    finally:
        proc.terminate()
        proc.wait(10)


def rsync_raw(src_root: Path, raw: Path, bwlimit=None):
    argv = ["rsync", "--no-whole-file", *livedb.RAW_RSYNC_ARGS]
    if bwlimit:
        argv.append("--bwlimit=%d" % bwlimit)
    subprocess.run(argv + [str(src_root) + "/", str(raw) + "/"], check=True)


def test_held_copies_are_consistent_and_complete(live, tmp_path):
    root, db, counter = live
    rel = db.relative_to(root)
    raw = tmp_path / "node" / ".ethoscope-backup" / "raw"
    dest = tmp_path / "node" / rel
    raw.mkdir(parents=True)
    stats = []
    t_end = time.time() + 40
    passes = 0
    while passes < 30 or (passes < 60 and time.time() < t_end - 30):
        holder = subprocess.Popen([PY, "-c", livedb.HOLDER_SCRIPT, str(root), "60"],
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        hold = livedb.parse_holder_ready(readline(holder))
        at_hold = committed(counter)          # read after the read transaction began
        assert hold is not None and hold.held == (str(rel),) and not hold.failed, hold
        # a third of the passes are slowed so the copy spans many commits and checkpoints
        rsync_raw(root, raw, bwlimit=3000 if passes % 3 == 2 else None)
        holder.stdin.close()
        done = readline(holder)
        assert holder.wait(10) == 0 and done.startswith(livedb.DONE_PREFIX) and '"eof"' in done
        raw_db = raw / rel
        raw_wal = Path(str(raw_db) + "-wal")
        v = livedb.recover_database(raw_db, raw_wal if raw_wal.exists() else None, dest)
        assert v.ok, v
        counts = roi_counts(dest)
        assert len(set(counts)) == 1, ("torn transaction", counts)
        assert counts[0] >= at_hold, ("lost committed rows", counts[0], at_hold)
        assert v.rows == TABLES * counts[0]
        assert not Path(str(dest) + "-wal").exists() and not Path(str(dest) + "-journal").exists()
        stats.append((at_hold, counts[0], raw_wal.stat().st_size))
        livedb.forget_mtimes([raw_db, raw_wal])
        passes += 1
    assert passes >= 30
    # the copies did include rows committed after the hold began (the WAL tail), not only the snapshot
    assert any(c > h for h, c, _ in stats)
    print("passes", passes, "rows gained beyond hold:", [c - h for h, c, _ in stats][:10])


def test_control_plain_db_copy_misses_rows(live, tmp_path):
    """Without the holder and the -wal, a copy of the .db misses committed rows (the problem solved)."""
    root, db, counter = live
    missed = torn = 0
    for i in range(10):
        before = committed(counter)
        copy = tmp_path / ("plain%d.db" % i)
        shutil.copyfile(str(db), str(copy))
        try:
            con = sqlite3.connect("file:%s?immutable=1" % copy, uri=True)
            ok = con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
            con.close()
            if not ok:
                torn += 1
            elif min(roi_counts(copy)) < before:
                missed += 1
        except sqlite3.DatabaseError:
            torn += 1
        time.sleep(0.05)
    print("plain .db copies: missed rows %d/10, torn %d/10" % (missed, torn))
    assert missed + torn >= 1


def test_holder_writes_nothing_when_writer_gone(tmp_path):
    """Holder on a db+wal whose writer died (no checkpoint on close, no -wal deletion, -shm-less left idle)."""
    root = tmp_path / "r"
    root.mkdir()
    db = root / "a.db"
    subprocess.run([PY, "-c", "import sqlite3,os\nc=sqlite3.connect(%r,isolation_level=None)\n"
                    "c.execute('pragma journal_mode=wal');c.execute('create table t(x)')\n"
                    "[c.execute('insert into t values (1)') for _ in range(50)]\nos._exit(0)" % str(db)],
                   check=True)
    shutil.copyfile(str(db), str(root / "b.db"))
    shutil.copyfile(str(db) + "-wal", str(root / "b.db-wal"))   # b: wal but no shm
    before = {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in root.iterdir() if not p.name.endswith("shm")}
    holder = subprocess.Popen([PY, "-c", livedb.HOLDER_SCRIPT, str(root), "30"],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    hold = livedb.parse_holder_ready(readline(holder))
    assert hold.held == ("a.db",) and hold.idle == ("b.db",) and not hold.failed
    holder.stdin.close()
    assert holder.wait(10) == 0
    after = {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in root.iterdir() if not p.name.endswith("shm")}
    assert after == before
    assert not (root / "b.db-shm").exists()


def test_holder_safety_timeout(tmp_path):
    root = tmp_path / "r"
    root.mkdir()
    holder = subprocess.Popen([PY, "-c", livedb.HOLDER_SCRIPT, str(root), "0.5"],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    assert livedb.parse_holder_ready(readline(holder)) == livedb.HoldResult((), {}, (), holder.pid,
                                                                             sqlite3.sqlite_version)
    assert holder.wait(10) == livedb.HOLDER_TIMEOUT_EXIT
    assert '"timeout"' in readline(holder)
    holder.stdin.close()
