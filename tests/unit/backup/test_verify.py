"""verify: .md5 sidecars parsed (pure), files hashed, databases checked defensively (real SQLite),
and the walk confined to a device's folder."""
import dataclasses
import hashlib
import json
import logging
import os
import sqlite3
import threading
import time

import pytest

from ethoscope_rsync.backup import verify
from ethoscope_rsync.config.load import load_config
from ethoscope_rsync.state.history import DeviceHistory, History
from ethoscope_rsync.state.store import save_history
from ethoscope_rsync.state.store import load_verifications
from ethoscope_rsync.backup.verify import Item, check_database, check_sidecar, device_items, parse_md5

HEX = "0123456789abcdef0123456789abcdef"
OTHER = "fedcba9876543210fedcba9876543210"
MID = "a" * 32


@pytest.mark.parametrize("text,expected", [
    (HEX + "\n", HEX),                                          # what the lab (and ethoscopes) write
    (HEX.upper(), HEX),
    (f"{HEX}  chunk_00001.h264\n", HEX),                        # md5sum
    (f"{HEX} *chunk_00001.h264\n", HEX),                        # md5sum --binary
    (f"{OTHER}  other.h264\n{HEX}  /some/where/chunk_00001.h264\n", HEX),
    (f"MD5 (chunk_00001.h264) = {HEX}\n", HEX),                 # BSD md5
    (f"{HEX}  renamed.h264\n", HEX),                            # one line: taken whatever it names
    (f"{OTHER}  a.h264\n{HEX}  b.h264\n", None),                # several lines, none for this file
    ("", None), ("not a checksum\n", None), (HEX[:-1] + "\n", None), (HEX + "0\n", None),
    ("\x00\xff" * 100, None),
])
def test_parse_md5(text, expected):
    assert parse_md5(text, "chunk_00001.h264") == expected


def write(path, data):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def test_sidecar_match_mismatch_missing(tmp_path):
    stop = threading.Event()
    chunk = write(tmp_path / "c.h264", b"video" * 1000)
    write(tmp_path / "c.h264.md5", (hashlib.md5(chunk.read_bytes()).hexdigest() + "\n").encode())
    assert check_sidecar(str(chunk), str(chunk) + ".md5", stop) == ""
    chunk.write_bytes(b"Video" + b"video" * 999)
    assert check_sidecar(str(chunk), str(chunk) + ".md5", stop).startswith("checksum mismatch: md5 ")
    chunk.unlink()
    assert check_sidecar(str(chunk), str(chunk) + ".md5", stop) == "missing (its .md5 is there)"
    write(tmp_path / "d.h264.md5", b"garbage")
    assert check_sidecar(str(tmp_path / "d.h264"), str(tmp_path / "d.h264.md5"), stop) == \
        "its .md5 holds no checksum for it"


def make_db(path, rows=200):
    path.parent.mkdir(parents=True, exist_ok=True)
    con = sqlite3.connect(path)
    con.execute("CREATE TABLE ROI_1 (id INTEGER PRIMARY KEY, t INTEGER, x BLOB)")
    con.executemany("INSERT INTO ROI_1 (t, x) VALUES (?, ?)", [(i, os.urandom(200)) for i in range(rows)])
    con.execute("CREATE INDEX t_idx ON ROI_1 (t)")
    con.commit()
    con.close()
    return path


def test_database_sound_damaged_and_not_a_database(tmp_path):
    stop = threading.Event()
    good = make_db(tmp_path / "good.db")
    before = good.stat()
    assert check_database(str(good), stop) == ""
    after = good.stat()
    assert (before.st_mtime_ns, before.st_size) == (after.st_mtime_ns, after.st_size)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["good.db"]      # no -journal, -wal or -shm made
    damaged = make_db(tmp_path / "damaged.db")
    with open(damaged, "r+b") as handle:             # overwrite pages in the middle (index and table)
        handle.seek(3 * 4096)
        handle.write(os.urandom(4 * 4096))
    assert check_database(str(damaged), stop) != ""
    junk = write(tmp_path / "junk.db", b"this is not SQLite" * 100)
    assert check_database(str(junk), stop).startswith("not a sound database: ")


def sql_db(path, *statements):
    con = sqlite3.connect(path)
    for statement in statements:
        con.execute(statement)
    con.commit()
    con.close()
    return path


def test_database_in_wal_mode_is_checked_without_touching_it(tmp_path):
    db = sql_db(tmp_path / "wal.db", "PRAGMA journal_mode=WAL", "CREATE TABLE t (x)", "INSERT INTO t VALUES (1)")
    names = sorted(p.name for p in tmp_path.iterdir())
    assert check_database(str(db), threading.Event()) == ""
    assert sorted(p.name for p in tmp_path.iterdir()) == names


def test_database_check_has_a_deadline(tmp_path):
    db = make_db(tmp_path / "big.db", rows=20000)
    assert check_database(str(db), threading.Event(), deadline=0.0) == "integrity_check did not finish within 0s"
    stop = threading.Event()
    stop.set()
    with pytest.raises(verify.Stopped):
        check_database(str(db), stop)


def test_a_hostile_schema_never_runs(tmp_path):
    db = sql_db(tmp_path / "hostile.db", "CREATE TABLE t (x)",
                "CREATE VIEW v AS SELECT load_extension('/tmp/evil') AS y",
                "CREATE TRIGGER tr AFTER INSERT ON t BEGIN SELECT load_extension('/tmp/evil'); END")
    assert check_database(str(db), threading.Event()) == ""


def test_walk_stays_in_the_device_folder_and_skips_our_hidden_ones(tmp_path):
    results, videos = tmp_path / "results", tmp_path / "videos"
    make_db(results / MID / "ETHOSCOPE_001" / "ts" / "x.db")
    make_db(results / ("b" * 32) / "ETHOSCOPE_002" / "ts" / "y.db")             # another device
    make_db(results / MID / "ETHOSCOPE_001" / "ts" / ".ethoscope-backup-partial" / "x.db")
    make_db(results / ".ethoscope-backup" / "raw" / MID / "x.db")
    write(videos / MID / "E" / "ts" / "c1.h264", b"1")
    write(videos / MID / "E" / "ts" / "c1.h264.md5", b"x")
    write(videos / MID / "E" / "ts" / "c2.h264", b"no sidecar: not checkable")
    write(videos / MID / "E" / "ts" / "c3.h264.md5", b"sidecar without file")
    os.symlink("/etc/passwd", videos / MID / "E" / "ts" / "c4.h264")
    write(videos / MID / "E" / "ts" / "c4.h264.md5", b"x")
    os.symlink(str(results / ("b" * 32)), videos / MID / "E" / "elsewhere")
    items = device_items({"results": str(results), "videos": str(videos)}, MID, since=0)
    assert sorted((i.shown, i.check, i.size) for i in items) == [
        (f"results/{MID}/ETHOSCOPE_001/ts/x.db", "database", (results / MID / "ETHOSCOPE_001/ts/x.db").stat().st_size),
        (f"videos/{MID}/E/ts/c1.h264", "md5", 1),
        (f"videos/{MID}/E/ts/c3.h264", "md5", 0)]
    later = device_items({"videos": str(videos)}, MID,
                         since=os.stat(videos / MID / "E" / "ts" / "c1.h264").st_mtime + 60)
    assert later == []


def test_a_symlinked_file_is_never_followed_at_check_time(tmp_path):
    os.symlink("/etc/passwd", tmp_path / "c.h264")
    write(tmp_path / "c.h264.md5", hashlib.md5(open("/etc/passwd", "rb").read()).hexdigest().encode())
    item = Item(str(tmp_path / "c.h264"), "videos/c.h264", 0, "md5")
    assert verify.check_item(item, threading.Event()) == "cannot read: Too many levels of symbolic links"
    os.symlink(str(make_db(tmp_path / "real.db")), tmp_path / "link.db")
    assert verify.check_item(Item(str(tmp_path / "link.db"), "results/link.db", 0, "database"),
                             threading.Event()) == "a symbolic link, not checked"


class Terminal:
    def __init__(self):
        self.text = ""

    def isatty(self):
        return True

    def write(self, text):
        self.text += text

    def flush(self):
        pass


def test_progress_bar_on_a_terminal_only():
    terminal = Terminal()
    bar = verify._Bar(total=200, stream=terminal)
    bar.show(50, "ETHOSCOPE_001 x.h264")
    bar.clear()
    assert terminal.text == "\r\033[K[%-30s]  25%% ETHOSCOPE_001 x.h264\r\033[K" % ("#" * 7)
    quiet = verify._Bar(total=200, stream=open(os.devnull, "w"))
    assert quiet.enabled is False


def test_verify_records_and_logs_with_journal_fields(tmp_path, journal):
    conf = tmp_path / "backup.conf"
    conf.write_text("[paths]\nresults = %s\nvideos = %s\nstate_dir = %s\n" % (
        tmp_path / "results", tmp_path / "videos", tmp_path / "state"))
    config = load_config(conf)
    save_history(config.history_file, History(devices={MID: DeviceHistory(id=MID, name="ETHOSCOPE_001")}))
    chunk = write(tmp_path / "videos" / MID / "ETHOSCOPE_001" / "ts" / "c.h264", b"abc")
    write(tmp_path / "videos" / MID / "ETHOSCOPE_001" / "ts" / "c.h264.md5", (OTHER + "\n").encode())
    assert verify.verify(config, 0, threading.Event()) == 1
    (damaged,) = [r for r in journal.records if r.levelno == logging.ERROR and "DAMAGED" in r.getMessage()]
    assert (damaged.DEVICE_ID, damaged.DEVICE_NAME, damaged.VERIFY_RESULT) == (MID, "ETHOSCOPE_001", "damaged")
    assert damaged.VERIFY_FILE == "videos/%s" % chunk.relative_to(tmp_path / "videos")
    record = json.loads(config.verify_file.read_text())["devices"][MID]
    assert (record["files"], record["bytes"], record["damaged_count"], record["complete"]) == (1, 3, 1, True)
    assert dataclasses.asdict(load_verifications(config.verify_file)[MID])["damaged"][0][1].startswith(
        "checksum mismatch")


def test_a_crafted_database_costs_verify_nothing(tmp_path):
    """verify opens a device's database like a pass does (untrusted_sqlite): a schema costing 1.2 GB
    or hours of CPU to check is reported at once, or at the deadline. (Read-only, SQLite skips CHECK
    constraints, but not generated columns or index expressions.)"""
    from tests.lab.crafted import craft

    class Owner:
        id, name = MID, "ETHOSCOPE_001"
    bomb = craft(tmp_path / "bomb.db", Owner, "2024-03-01_09-00-00", "memory", "generated", rows=2)
    started = time.process_time()
    assert check_database(str(bomb), threading.Event()).startswith("not a sound database: builds values larger")
    slow = craft(tmp_path / "slow.db", Owner, "2024-03-01_09-00-00", "cpu", "generated", rows=100_000)
    assert check_database(str(slow), threading.Event(), deadline=1.0) == "integrity_check did not finish within 1s"
    assert time.process_time() - started < 5


def test_files_that_vanish_while_the_walk_plans_are_no_damage(tmp_path, monkeypatch):
    """verify shares no lock with a pass: rsync's temporary ``.NAME.XXXXXX`` and a recovery's
    ``.x.db.recover-*`` files come and go between listing a folder and looking at a file. Planning
    goes on (such files are never checked), and a file that vanished is simply not checked."""
    folder = tmp_path / "results" / MID / "ETHOSCOPE_001" / "ts"
    kept = make_db(folder / "x.db")
    gone = [write(folder / ".y.db.AbC123", b"rsync's temporary file"),
            write(folder / ".x.db.recover-1-2", b"a recovery's temporary file"),
            make_db(folder / "z.db")]
    real = os.scandir

    class ThenRemoved:
        """The real listing, after which the pass removes its files (the fault to inject)."""

        def __init__(self, path):
            self.path, self.listing = path, real(path)

        def __enter__(self):
            return self.listing.__enter__()

        def __exit__(self, *exc):
            self.listing.__exit__(*exc)
            if self.path == str(folder):
                for path in gone:
                    path.unlink()

    monkeypatch.setattr(verify.os, "scandir", ThenRemoved)
    items = device_items({"results": str(tmp_path / "results")}, MID, since=0)
    assert [(i.shown, i.check) for i in items] == [(f"results/{MID}/ETHOSCOPE_001/ts/x.db", "database")]
    assert items[0].size == kept.stat().st_size


def test_names_from_a_device_cannot_drive_the_terminal(tmp_path, capsys):
    """Names on the node came from a device (rsync turns its \\#033 back into ESC): the progress
    bar and the DAMAGED lines print them escaped, as the log does."""
    terminal = Terminal()
    verify._Bar(total=10, stream=terminal).show(5, "ETHOSCOPE_001 c\x1b[2J\n.h264")
    assert terminal.text.endswith("ETHOSCOPE_001 c\\x1b[2J\\x0a.h264") and terminal.text.count("\x1b") == 1
    conf = tmp_path / "backup.conf"
    conf.write_text("[paths]\nresults = %s\nvideos = %s\nstate_dir = %s\n" % (
        tmp_path / "results", tmp_path / "videos", tmp_path / "state"))
    config = load_config(conf)
    save_history(config.history_file, History(devices={MID: DeviceHistory(id=MID, name="ETHOSCOPE_001")}))
    write(tmp_path / "videos" / MID / "ts" / "c\x1b[2J\n.h264", b"abc")
    write(tmp_path / "videos" / MID / "ts" / "c\x1b[2J\n.h264.md5", (OTHER + "\n").encode())
    assert verify.verify(config, 0, threading.Event()) == 1
    printed = capsys.readouterr().out
    assert printed == f"DAMAGED ETHOSCOPE_001 videos/{MID}/ts/c\\x1b[2J\\x0a.h264: checksum mismatch: md5 " \
                      f"{hashlib.md5(b'abc').hexdigest()}, its .md5 says {OTHER}\n"
