"""Live-database copies with the holder, against a real writer process, real rsync and the real holder.

The writer appends one row to each of 8 ROI tables per transaction (every ~10 ms), so a consistent
database has equal counts in all ROI tables; after each commit it records its committed-transaction
count in a side file. Each pass: start the holder, read the committed count, rsync the raw pair
(delta mode, partly rate-limited so checkpoints happen mid-copy), release, recover on the "node".
"""
import os
import select
import shutil
import sqlite3
import subprocess
import time
from pathlib import Path

import pytest

from ethoscope_rsync.backup import livedb

PY = "/usr/bin/python3"
TABLES = 8          # an ethoscope writes one table per ROI (up to 20)
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
    passes = 0
    while passes < 36:
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
        v = livedb.recover_database(raw_db, raw_wal if raw_wal.exists() else None, dest, check_timeout=300.0)
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


def wal_salts(wal: Path) -> bytes:
    with open(str(wal), "rb") as f:
        return f.read(32)[16:24]


def test_copy_across_checkpoint_and_wal_restart(live, tmp_path):
    """Adversarial timing: copy the .db, wait until the writer checkpoints and restarts its WAL, copy the -wal.

    With the holder every copy must recover consistent and complete (the restart either cannot
    happen, reader on read-lock > 0, or happens over a .db that no checkpoint may touch, read-lock 0).
    Without the holder (control) the same timing loses or corrupts data.
    """
    root, db, counter = live
    wal = Path(str(db) + "-wal")
    outcome = {"held_restarted": 0, "held_no_restart": 0, "unheld_bad": 0, "unheld_ok": 0}
    for i in range(10):
        held = i % 2 == 0
        if held:
            holder = subprocess.Popen([PY, "-c", livedb.HOLDER_SCRIPT, str(root), "60"],
                                      stdin=subprocess.PIPE, stdout=subprocess.PIPE)
            assert livedb.parse_holder_ready(readline(holder)).held
        at_hold = committed(counter)
        r_db, r_wal = tmp_path / ("r%d.db" % i), tmp_path / ("r%d.db-wal" % i)
        salt = wal_salts(wal)
        shutil.copyfile(str(db), str(r_db))
        deadline = time.time() + 2.5
        while wal_salts(wal) == salt and time.time() < deadline:
            time.sleep(0.02)
        restarted = wal_salts(wal) != salt
        time.sleep(0.2)                       # let the writer overwrite the start of the wal
        shutil.copyfile(str(wal), str(r_wal))
        if held:
            holder.stdin.close()
            assert holder.wait(10) == 0
        v = livedb.recover_database(r_db, r_wal, tmp_path / ("d%d.db" % i), previous_rows=0, check_timeout=300.0)
        good = v.ok and len(set(roi_counts(tmp_path / ("d%d.db" % i)))) == 1 \
            and roi_counts(tmp_path / ("d%d.db" % i))[0] >= at_hold
        if held:
            assert good, (v, at_hold)
            outcome["held_restarted" if restarted else "held_no_restart"] += 1
        else:
            assert restarted, "writer did not restart its wal within 2.5 s"
            outcome["unheld_ok" if good else "unheld_bad"] += 1
    print(outcome)
    assert outcome["unheld_bad"] >= 1


def test_hold_on_fully_backfilled_wal_survives_restart(tmp_path):
    """The read-lock-0 case, made deterministic: the holder starts right after a full checkpoint.

    No checkpoint may then write the .db, but the writer restarts the WAL (new salts) and overwrites
    it from the start while the hold lasts; a copy of the -wal whose header predates the restart
    (torn) or follows it must both recover to at least the held snapshot.
    """
    root = tmp_path / "r"
    root.mkdir()
    db = root / "a.db"
    wal = Path(str(db) + "-wal")
    w = sqlite3.connect(str(db), isolation_level=None)
    w.execute("PRAGMA journal_mode=WAL")
    w.execute("PRAGMA synchronous=NORMAL")
    w.execute("CREATE TABLE ROI_1 (id INTEGER PRIMARY KEY, x BLOB)")
    for _ in range(300):
        w.execute("INSERT INTO ROI_1 (x) VALUES (?)", (os.urandom(200),))
    assert w.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()[0] == 0     # fully backfilled
    holder = subprocess.Popen([PY, "-c", livedb.HOLDER_SCRIPT, str(root), "60"],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    assert livedb.parse_holder_ready(readline(holder)).held == ("a.db",)
    db_bytes, old_header = db.read_bytes(), wal.read_bytes()[:32]
    for _ in range(50):
        w.execute("INSERT INTO ROI_1 (x) VALUES (?)", (os.urandom(200),))
    busy, log, done = w.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
    assert wal.read_bytes()[16:24] != old_header[16:24], "writer should have restarted the wal"
    assert done == 0 and db.read_bytes() == db_bytes, "no backfill may happen while read-lock 0 is held"
    raw = tmp_path / "raw"
    raw.mkdir()
    (raw / "a.db").write_bytes(db_bytes)
    (raw / "a.db-wal").write_bytes(wal.read_bytes())
    (raw / "torn.db-wal").write_bytes(old_header + wal.read_bytes()[32:])
    holder.stdin.close()
    assert holder.wait(10) == 0
    w.close()
    v = livedb.recover_database(raw / "a.db", raw / "a.db-wal", tmp_path / "n1.db", check_timeout=300.0)
    assert v.ok and v.rows == 350, v
    v = livedb.recover_database(raw / "a.db", raw / "torn.db-wal", tmp_path / "n2.db", check_timeout=300.0)
    assert v.ok and v.rows == 300, v


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
