"""Unit tests for ethoscope_rsync.backup.livedb (no processes except a local /bin/sh for the quoting test)."""
import os
import shutil
import sqlite3
import subprocess
from pathlib import Path

import pytest

from ethoscope_rsync.backup import livedb


def make_pair(tmp_path: Path, commits: int, name="dev.db", checkpoint_at=None):
    """A WAL db whose rows are all still in the -wal, captured without closing (like a live device)."""
    src = tmp_path / "src"
    src.mkdir(exist_ok=True)
    db = src / name
    con = sqlite3.connect(str(db), isolation_level=None)
    con.execute("PRAGMA journal_mode=WAL")
    con.execute("PRAGMA wal_autocheckpoint=0")
    con.execute("CREATE TABLE ROI_1 (id INTEGER PRIMARY KEY, x BLOB)")
    con.execute("CREATE TABLE ROI_2 (id INTEGER PRIMARY KEY, x BLOB)")
    for i in range(commits):
        if i == checkpoint_at:
            con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        con.execute("BEGIN")
        con.execute("INSERT INTO ROI_1 (x) VALUES (?)", (os.urandom(300),))
        con.execute("INSERT INTO ROI_2 (x) VALUES (?)", (os.urandom(300),))
        con.execute("COMMIT")
    raw = tmp_path / "raw"
    raw.mkdir(exist_ok=True)
    shutil.copyfile(str(db), str(raw / name))
    shutil.copyfile(str(db) + "-wal", str(raw / (name + "-wal")))
    con.close()
    return raw / name, raw / (name + "-wal")


def test_recover_pair(tmp_path):
    raw_db, raw_wal = make_pair(tmp_path, 50)
    dest = tmp_path / "node" / "a" / "dev.db"
    v = livedb.recover_database(raw_db, raw_wal, dest, check_timeout=300.0)
    assert v == livedb.Verdict(True, 100, "recovered 100 rows", True)
    assert livedb.count_rows(dest, check_timeout=300.0) == 100
    assert sorted(os.listdir(dest.parent)) == ["dev.db"]          # single file, no temp left
    assert dest.read_bytes()[18:20] == b"\x01\x01"                 # rollback-journal mode
    assert raw_wal.stat().st_size > 0 and raw_db.exists()          # raw pair untouched
    # same input again: nothing rewritten
    before = dest.stat().st_mtime_ns, dest.stat().st_ino
    v2 = livedb.recover_database(raw_db, raw_wal, dest, check_timeout=300.0)
    assert v2.ok and not v2.replaced and (dest.stat().st_mtime_ns, dest.stat().st_ino) == before


def test_a_stop_request_interrupts_a_recovery_and_leaves_the_copy_in_place(tmp_path):
    """systemctl stop during a long integrity check: it ends at SQLite's next progress callback
    (not after [transfer] database_check_timeout), the node's copy untouched, no temp file left."""
    import threading
    raw_db, raw_wal = make_pair(tmp_path, 400)
    dest = tmp_path / "node" / "dev.db"
    dest.parent.mkdir()
    dest.write_bytes(b"the node's copy")
    stop = threading.Event()
    stop.set()
    v = livedb.recover_database(raw_db, raw_wal, dest, check_timeout=3600, stop=stop)
    assert v == livedb.Verdict(False, 0, "stopped before it was verified", False)
    assert dest.read_bytes() == b"the node's copy" and os.listdir(dest.parent) == ["dev.db"]


def test_torn_wal_recovers_consistent_prefix(tmp_path):
    raw_db, raw_wal = make_pair(tmp_path, 60)
    size = raw_wal.stat().st_size
    dest = tmp_path / "node" / "dev.db"
    for cut in (size - 1, size - 4000, size // 2 + 123):
        torn = tmp_path / ("torn%d" % cut)
        torn.write_bytes(raw_wal.read_bytes()[:cut])
        v = livedb.recover_database(raw_db, torn, tmp_path / ("d%d.db" % cut), check_timeout=300.0)
        assert v.ok, v
        con = sqlite3.connect(str(tmp_path / ("d%d.db" % cut)))
        a, b = (con.execute("SELECT count(*) FROM ROI_%d" % i).fetchone()[0] for i in (1, 2))
        con.close()
        assert a == b and v.rows == a + b and v.rows < 120          # whole transactions only
    # no valid frame at all: the .db alone (here: before any table was committed to it)
    (tmp_path / "hdr").write_bytes(raw_wal.read_bytes()[:40])
    assert livedb.recover_database(raw_db, tmp_path / "hdr", tmp_path / "e.db", check_timeout=300.0).rows == 0
    # a pair whose wal was garbled in the middle still gives the prefix before the damage
    data = bytearray(raw_wal.read_bytes())
    data[size // 2: size // 2 + 100] = b"\xff" * 100
    garbled = tmp_path / "garbled"
    garbled.write_bytes(bytes(data))
    v = livedb.recover_database(raw_db, garbled, dest, check_timeout=300.0)
    assert v.ok and 0 < v.rows < 120


def test_garbage_db_leaves_dest_untouched(tmp_path):
    raw_db, raw_wal = make_pair(tmp_path, 200, checkpoint_at=190)   # most rows in the .db itself
    dest = tmp_path / "node" / "dev.db"
    assert livedb.recover_database(raw_db, raw_wal, dest, check_timeout=300.0).ok
    good = dest.read_bytes()
    bad = tmp_path / "bad.db"
    bad.write_bytes(b"this is not a database" * 300)
    v = livedb.recover_database(bad, None, dest, check_timeout=300.0)
    assert not v.ok and not v.replaced
    truncated = tmp_path / "trunc.db"
    truncated.write_bytes(raw_db.read_bytes()[:raw_db.stat().st_size // 2])
    v = livedb.recover_database(truncated, raw_wal, dest, check_timeout=300.0)
    assert not v.ok and not v.replaced, v
    assert dest.read_bytes() == good
    assert sorted(os.listdir(dest.parent)) == ["dev.db"]


def test_fewer_rows_refused(tmp_path):
    raw_db, raw_wal = make_pair(tmp_path, 30)
    dest = tmp_path / "node" / "dev.db"
    assert livedb.recover_database(raw_db, raw_wal, dest, check_timeout=300.0).rows == 60
    good = dest.read_bytes()
    torn = tmp_path / "torn"
    torn.write_bytes(raw_wal.read_bytes()[:raw_wal.stat().st_size // 2])
    v = livedb.recover_database(raw_db, torn, dest, check_timeout=300.0)                  # older than the existing copy
    assert not v.ok and not v.replaced and "refused" in v.message and dest.read_bytes() == good
    v = livedb.recover_database(raw_db, raw_wal, dest, previous_rows=61, check_timeout=300.0)
    assert not v.ok and "refused" in v.message and dest.read_bytes() == good
    v = livedb.recover_database(raw_db, torn, tmp_path / "other.db", previous_rows=0, check_timeout=300.0)
    assert v.ok and v.replaced


def test_stale_dest_journals_removed(tmp_path):
    raw_db, raw_wal = make_pair(tmp_path, 10)
    dest = tmp_path / "node" / "dev.db"
    dest.parent.mkdir()
    other_db, other_wal = make_pair(tmp_path / "x" if (tmp_path / "x").mkdir() is None else None, 3)
    shutil.copyfile(str(other_wal), str(dest) + "-wal")             # a stale wal left by someone
    v = livedb.recover_database(raw_db, raw_wal, dest, check_timeout=300.0)
    assert v.ok and not Path(str(dest) + "-wal").exists() and livedb.count_rows(dest, check_timeout=300.0) == 20


def test_count_rows_missing_and_garbage(tmp_path):
    with pytest.raises(FileNotFoundError):
        livedb.count_rows(tmp_path / "nope.db", check_timeout=300.0)
    g = tmp_path / "g.db"
    g.write_bytes(b"x" * 5000)
    with pytest.raises(sqlite3.DatabaseError):
        livedb.count_rows(g, check_timeout=300.0)
    assert sorted(os.listdir(tmp_path)) == ["g.db"]


def test_parse_holder_ready():
    line = 'ETHOSCOPE-BACKUP-HOLD {"held": ["a/b.db"], "failed": {"c.db": "busy"}, "idle": [], "pid": 7}\n'
    r = livedb.parse_holder_ready(line)
    assert r == livedb.HoldResult(("a/b.db",), {"c.db": "busy"}, (), 7, "")
    assert r.with_wal == ("a/b.db",)
    assert livedb.parse_holder_ready(line.encode()) == r
    for bad in ("", "hello", "ETHOSCOPE-BACKUP-HOLD", "ETHOSCOPE-BACKUP-HOLD {", 'ETHOSCOPE-BACKUP-HOLD []',
                'ETHOSCOPE-BACKUP-HOLD {"held": "x", "failed": {}}', 'ETHOSCOPE-BACKUP-HOLD {"failed": {}}',
                'ETHOSCOPE-BACKUP-HOLD {"held": [1], "failed": {}}', 'xETHOSCOPE-BACKUP-HOLD {"held": []}',
                'ETHOSCOPE-BACKUP-RELEASED {"reason": "eof"}'):
        assert livedb.parse_holder_ready(bad) is None, bad


HOSTILE = ["/data/with space", "/d/it's", '/d/"q"', "/d/$(touch PWNED)", "/d/`touch PWNED`", "/d/a;b&c|d",
           "/d/new\nline", "-rf", "/d/*"]


@pytest.mark.parametrize("root", HOSTILE)
def test_make_holder_command_quoting(tmp_path, root):
    ssh = ("ssh", "-i", "/k", "-o", "BatchMode=yes", "ethoscope@169.254.77.11")
    argv = livedb.make_holder_command(ssh, "python3", root, 120)
    assert argv[:len(ssh)] == ssh and len(argv) == len(ssh) + 1
    # the remote side hands the one string to a POSIX shell: do the same locally, with a stand-in
    # python that prints its argv instead of running the holder
    remote = argv[-1].replace("python3", "/usr/bin/python3 -c 'import sys; print(repr(sys.argv[1:]))'", 1)
    out = subprocess.run(["/bin/sh", "-c", remote], cwd=str(tmp_path), capture_output=True, text=True, check=True)
    args = eval(out.stdout)
    assert args == ["-c", livedb.HOLDER_SCRIPT, root, "120"]
    assert not (tmp_path / "PWNED").exists()


def test_holder_script_is_py37_syntax():
    import ast
    ast.parse(livedb.HOLDER_SCRIPT, feature_version=(3, 7))


def test_forget_mtimes(tmp_path):
    f = tmp_path / "a"
    f.write_text("x")
    assert livedb.forget_mtimes([f, tmp_path / "missing"]) == [f]
    assert f.stat().st_mtime == 0
