"""What the second copy sends: the destinations without hidden files, journals, and databases never
verified on this node."""
import os

from ethoscope_rsync.offsite.sources import Found, find_databases, select
from ethoscope_rsync.state.history import DatabaseRecord, DeviceHistory, History

ID = "a" * 32
DB = f"{ID}/ETHOSCOPE_001/2026-01-01_00-00-00/2026-01-01_00-00-00_{ID}.db"


def write(path, data=b"x"):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def test_databases_are_found_outside_hidden_folders_and_never_through_links(tmp_path):
    results = tmp_path / "results"
    write(results / DB)
    write(results / ".ethoscope-backup" / "raw" / ID / "x.db")
    write(results / ID / ".ethoscope-backup-partial" / "y.db")
    write(results / ID / ".z.db.recover-1-2")
    write(results / ID / ".hidden.db")
    write(results / ID / "notes.txt")
    (tmp_path / "elsewhere").mkdir()
    write(tmp_path / "elsewhere" / "other.db")
    os.symlink(tmp_path / "elsewhere", results / ID / "link")
    os.symlink(tmp_path / "elsewhere" / "other.db", results / ID / "linked.db")
    found = find_databases("results", results)
    assert [(d.kind, d.path, d.size) for d in found] == [("results", DB, 1)]


def history(ok=True):
    record = DatabaseRecord([1, "m", -1, ""], ok, 10, "recovered", 1.0)
    return History(devices={ID: DeviceHistory(id=ID, name="ETHOSCOPE_001", databases={DB: record})})


def found(path=DB, size=1, mtime=5, kind="results"):
    return Found(kind, path, size, mtime)


def test_a_database_verified_by_its_last_recovery_is_sent_and_remembered(tmp_path):
    roots = {"results": tmp_path / "r", "videos": tmp_path / "v"}
    chosen = select(roots, "verified", history(ok=True), {}, [found()])
    assert chosen.held_back == () and chosen.ledger == {DB: (1, 5)}
    assert chosen.sources == (str(tmp_path / "r"), str(tmp_path / "v"))


def test_the_verified_copy_stays_verified_when_the_record_is_gone_or_failed_since(tmp_path):
    roots = {"results": tmp_path / "r"}
    for later in (History(), history(ok=False)):
        chosen = select(roots, "verified", later, {DB: (1, 5)}, [found()])
        assert chosen.held_back == () and chosen.ledger == {DB: (1, 5)}
        changed = select(roots, "verified", later, {DB: (1, 5)}, [found(size=2)])      # not the copy verified
        assert changed.held_back == (found(size=2),) and chosen.examples == []
        assert changed.examples == ["results/" + DB]
        assert changed.held_path(found()) == str(tmp_path / "r" / DB)


def test_a_database_never_verified_is_held_back_unless_all_are_sent(tmp_path):
    roots = {"results": tmp_path / "r", "videos": tmp_path / "v"}
    stray = found("x/old.db", kind="videos")
    assert select(roots, "verified", history(), {}, [found(), stray]).held_back == (stray,)
    assert select(roots, "all", History(), {}, [found(), stray]).held_back == ()


def test_the_ledger_forgets_databases_no_longer_on_the_node(tmp_path):
    chosen = select({"results": tmp_path}, "verified", History(), {DB: (1, 5), "gone.db": (3, 4)}, [found()])
    assert chosen.ledger == {DB: (1, 5)}


def test_held_databases_are_checked_until_the_time_is_up(tmp_path):
    import threading
    import time
    from ethoscope_rsync.offsite.sources import check_held
    roots = {"results": tmp_path}
    held = [found(f"{i}.db", mtime=i) for i in range(4)]
    chosen = select(roots, "verified", History(), {}, held)
    checked = []

    def check(path, seconds, stop):
        checked.append(path)
        return "" if path.endswith("0.db") else "integrity_check: damaged"
    after, damaged = check_held(chosen, check, 10.0, threading.Event(), time.monotonic() + 3600)
    assert [d.path for d in after.held_back] == ["1.db", "2.db", "3.db"] and after.ledger == {"0.db": (1, 0)}
    assert [(d.path, why) for d, why in damaged] == [(f"{i}.db", "integrity_check: damaged") for i in (1, 2, 3)]
    checked.clear()
    later, damaged = check_held(chosen, check, 10.0, threading.Event(), time.monotonic() - 1)     # no time left
    assert checked == [] and later.held_back == chosen.held_back and damaged == []
