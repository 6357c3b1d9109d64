"""The inventory database: every device's files in SQLite, bounded, and the history's summaries."""
import json
import sqlite3
from pathlib import Path

from ethoscope_rsync.render import upstream as render
from ethoscope_rsync.state import events as ev
from ethoscope_rsync.state.history import DATABASES_LISTED, NEWEST_KEPT, History, Inventory
from ethoscope_rsync.state.inventory import (FILES_MAX, PATH_MAX, Inventories, bounded, newest_files,
                                             open_inventories)
from ethoscope_rsync.state.store import StatusStore, load_history, read_json, save_history

ID = "0123456789abcdef0123456789abcdef"
A, B = "a" * 32, "b" * 32
OLD = Path(__file__).resolve().parents[2] / "fixtures" / "history-before-inventory.json"


def store(tmp_path, history=None, inventories=None):
    return StatusStore(tmp_path / "status.json", history or History(), pid=42, what="unified", interval=1.0,
                       clock=lambda: 1000.0, inventories=inventories)


def chunk(n: int, day: int = 1) -> str:
    return f"{ID}/ETHOSCOPE_004/2026-11-{day:02d}_10-00-00/2026-11-{day:02d}_10-00-00_{ID}_{n:05d}.h264"


def test_a_listing_replaces_the_tree_and_retires_what_the_device_deleted(tmp_path):
    db = Inventories(tmp_path / "inventory.sqlite")
    assert db.replace(ID, "videos", {"a": 10, "b": 20}) == (0, 0)
    assert db.replace(ID, "videos", {"b": 25, "c": 5}) == (1, 10)      # a deleted on the device, b grew
    assert db.files(ID, "videos") == {"b": 25, "c": 5} and db.files(ID, "results") == {}
    changes = db.db.total_changes
    assert db.replace(ID, "videos", {"b": 25, "c": 5}) == (1, 10)      # nothing changed: nothing written
    assert db.db.total_changes == changes
    db.close()
    again = Inventories(tmp_path / "inventory.sqlite", readonly=True)  # kept on disk, in WAL mode
    assert again.files(ID, "videos") == {"b": 25, "c": 5} and again.retired(ID, "videos") == (1, 10)
    assert again.db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_a_reader_opens_it_under_any_folder_name(tmp_path):
    folder = tmp_path / "state ?#%"
    Inventories(folder / "inventory.sqlite").replace(ID, "videos", {"a": 1})
    assert newest_files(folder / "inventory.sqlite", ID, ("videos", "results"), 5) == {
        "videos": {"a": 1}, "results": {}}
    assert newest_files(tmp_path / "none.sqlite", ID, ("videos",), 5) == {}


def test_paths_a_device_sends_are_kept_as_sent(tmp_path):
    db = Inventories(tmp_path / "inventory.sqlite")
    odd = {f"{ID}/x/\udcff\x1b[2J.h264": 1, f"{ID}/x/é.db": 2}
    db.replace(ID, "results", odd)
    assert db.files(ID, "results") == odd


def test_overlong_paths_and_files_past_the_bound_are_only_counted():
    listing = {f"{ID}/{'x' * PATH_MAX}": 7, f"{ID}/{'y' * (PATH_MAX - len(ID) - 1)}": 1}
    listing.update({f"{ID}/{n:06d}": 2 for n in range(FILES_MAX)})
    kept, untracked, untracked_bytes = bounded(listing)
    assert len(kept) == FILES_MAX and f"{ID}/{'x' * PATH_MAX}" not in kept
    assert (untracked, untracked_bytes) == (2, 7 + 2)


def test_a_device_cannot_grow_the_history(tmp_path):
    """The issue's device: kilobyte-long names by the thousand. The history names a bounded few,
    counts them all, and the status says why some were not kept."""
    s = store(tmp_path, inventories=Inventories(tmp_path / "inventory.sqlite"))
    s.add_device(ID, "ETHOSCOPE_004", "169.254.1.4")
    long_names = {f"{ID}/ETHOSCOPE_004/{'d' * 2100}/{n:05d}.h264": 0 for n in range(2000)}
    chunks = {chunk(n): 1000 for n in range(20000)}
    databases = {f"{ID}/ETHOSCOPE_004/2025-{m:02d}-01_10-00-00/x_{ID}.db": 5 for m in range(1, 13)}
    s.apply(ev.Listed(ID, "videos", tuple({**long_names, **chunks}.items()), (3, 300)))
    s.apply(ev.Listed(ID, "results", tuple(databases.items())))
    save_history(tmp_path / "history.json", s.history)
    assert (tmp_path / "history.json").stat().st_size < 100_000
    videos = load_history(tmp_path / "history.json").devices[ID].inventory["videos"]
    assert (videos.files, videos.bytes, videos.untracked_files) == (22003, 20000 * 1000 + 300, 2003)
    assert len(videos.present) == NEWEST_KEPT and max(videos.present) == chunk(19999)
    assert s.inventories.count(ID, "videos") == 20000


def test_the_summary_names_the_newest_files_and_databases():
    files = {chunk(n, 9): 1 for n in range(NEWEST_KEPT + 100)}
    databases = {f"{ID}/E/2025-01-{d:02d}_{h:02d}-00-00/x.db": 2 for d in range(1, 29) for h in range(24)}
    summary = Inventory.of({**files, **databases}, (0, 0), (4, 40))
    named = set(summary.present)
    assert named == set(sorted(files)[-NEWEST_KEPT:]) | set(sorted(databases)[-DATABASES_LISTED:])
    assert (summary.files, summary.bytes) == (len(files) + len(databases) + 4, len(files) + 2 * len(databases) + 40)


def test_an_old_history_migrates_on_first_read(tmp_path):
    """tests/fixtures/history-before-inventory.json was written by the store before the inventory
    database (commit eb4fbeb): device A listed 600 chunks and 3 databases, then a listing without
    its first day's (200 chunks, one database retired); B 3 chunks and one database."""
    old = read_json(OLD)
    before = render.status_document(None, old, 1795600200.0, 86400.0, horizon_days=14.0)
    history = load_history(OLD)
    assert history.devices[A].inventory["videos"].files == 800      # readers see the totals at once
    db = Inventories(tmp_path / "inventory.sqlite")
    s = store(tmp_path, history, db)
    assert len(db.files(A, "videos")) == 600 and db.retired(A, "videos") == (200, 219900)
    assert db.files(B, "results") == {p: v for p, v in old["devices"][B]["inventory"]["results"]["present"].items()}
    save_history(tmp_path / "history.json", s.history)
    new = read_json(tmp_path / "history.json")
    assert len(json.dumps(new)) < len(json.dumps(old)) and "legacy" not in json.dumps(new)
    after = render.status_document(None, new, 1795600200.0, 86400.0, horizon_days=14.0)
    for key in (A, B):
        for kind in ("results", "videos"):
            was, now = before["devices"][key]["synced"][kind], after["devices"][key]["synced"][kind]
            assert (now["local_files"], now["disk_usage_bytes"]) == (was["local_files"], was["disk_usage_bytes"])
            assert now["detailed_files"] == was["detailed_files"]
    # the next pass: A deleted its second day too; the retired totals go on from the old ones
    s = store(tmp_path, load_history(tmp_path / "history.json"), db)
    s.add_device(A, "ETHOSCOPE_004", "169.254.1.4")
    remaining = {p: size for p, size in db.files(A, "videos").items() if "2026-11-02" not in p}
    s.apply(ev.Listed(A, "videos", tuple(remaining.items())))
    videos = s.history.devices[A].inventory["videos"]
    assert (videos.retired_files, videos.files) == (400, 800)


def test_a_database_sqlite_cannot_use_is_set_aside(tmp_path):
    path = tmp_path / "inventory.sqlite"
    path.write_bytes(b"not a database" * 100)
    db, problem = open_inventories(path)
    assert "set aside" in problem and db.replace(ID, "videos", {"a": 1}) == (0, 0)
    assert [p.name for p in tmp_path.iterdir() if ".damaged-" in p.name]
    assert open_inventories(path)[1] == ""


def test_a_failing_write_keeps_the_pass_going(tmp_path):
    db = Inventories(tmp_path / "inventory.sqlite")
    db.replace(ID, "videos", {"a": 1})
    db.db.execute("PRAGMA query_only=1")              # as a full disk would refuse the write
    assert db.replace(ID, "videos", {"b": 1}, (5, 50)) == (5, 50)
    assert "cannot update the inventory database" in db.problem
    db.rename(ID, "e" * 32)                           # none of them raises: the pass goes on
    db.forget(ID)
    db.adopt("e" * 32, "videos", {"c": 1}, (0, 0))
    db.db.execute("PRAGMA query_only=0")
    assert db.files(ID, "videos") == {"a": 1}
    assert isinstance(sqlite3.connect(tmp_path / "inventory.sqlite").execute("SELECT 1").fetchone(), tuple)


def test_a_renamed_device_keeps_its_records_and_a_retired_one_leaves_none(tmp_path):
    db = Inventories(tmp_path / "inventory.sqlite")
    db.replace("ETHOSCOPE_004", "videos", {"a": 1, "b": 2})
    db.replace("ETHOSCOPE_004", "videos", {"b": 2})
    db.rename("ETHOSCOPE_004", ID)                    # its first contact: keyed by its machine id
    assert db.files("ETHOSCOPE_004", "videos") == {} and db.retired("ETHOSCOPE_004", "videos") is None
    assert db.files(ID, "videos") == {"b": 2} and db.retired(ID, "videos") == (1, 1)
    db.replace(ID, "results", {"x.db": 3})
    db.replace("e" * 32, "results", {"y.db": 4})
    db.forget(ID)
    assert db.retired(ID, "results") is None and db.count(ID, "videos") == 0
    assert db.db.execute("SELECT count(*) FROM files").fetchone()[0] == 1
    assert db.files("e" * 32, "results") == {"y.db": 4}
