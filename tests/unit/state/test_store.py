"""The status store: events applied by the single writer, atomic files, history."""
import json
import os

import pytest

from tests.fixtures.status import build, scripted_pass
from ethoscope_rsync.state import events as ev
from ethoscope_rsync.state.model import FILES_LISTED, PASSES_KEPT, Status
from ethoscope_rsync.state.history import History
from ethoscope_rsync.state.store import (StatusStore, load_history, load_status, save_history,
                                         write_json_atomic)

ID = "0123456789abcdef0123456789abcdef"
CHUNK = f"{ID}/ETHOSCOPE_004/ts/x.h264"


class Clock:
    now = 1000.0

    def __call__(self):
        return self.now


def store(tmp_path, history=None, previous=None, interval=1.0, what="unified"):
    return StatusStore(tmp_path / "status.json", history or History(), previous, pid=42, what=what,
                       interval=interval, clock=Clock())


def finish_device(s, ok=True, message="Backup completed successfully"):
    s.apply(ev.Started(ID, 1, 1000.0))
    s.apply(ev.Progressed(ID, "videos", 50, 10, 1048576.0, "a"))
    s.apply(ev.FileReceived(ID, "videos", CHUNK, 2048, 2000, 1000.0, 1001.0))
    s.apply(ev.TransferEnded(ID, "videos", 0, True, "success"))
    s.apply(ev.Listed(ID, "videos", ((CHUNK, 2048), (f"{ID}/ETHOSCOPE_004/ts/y.h264", 2048))))
    s.apply(ev.Finished(ID, ok, message, 1002.0))


def test_device_lifecycle(tmp_path):
    s = store(tmp_path)
    assert s.add_device(ID, "ETHOSCOPE_004", "169.254.1.4") == ID
    device = s.status.devices[ID]
    assert device.state == "queued" and not device.processing
    s.apply(ev.Started(ID, 1, 1000.0))
    assert device.state == "running" and device.processing and device.ended == 0
    s.apply(ev.Listed(ID, "results", ()))
    s.apply(ev.Progressed(ID, "videos", 50, 10, 1048576.0, "a"))
    assert device.progress.percent == 75.0       # results done, videos half-way
    assert device.progress.rate == 1048576.0     # a number, formatted only by render
    finish_device(s)
    assert device.state == "completed" and device.progress.percent == 100.0 and device.ended == 1002.0
    assert device.transfers["videos"].files[CHUNK].size == 2048
    assert s.status.run.bytes_received == 2000 and s.status.run.devices_done == 1
    past = s.history.devices[ID]
    assert past.last_outcome == "completed" and past.last_success == 1002.0 and past.last_bytes == 2000
    assert past.inventory["videos"].files == 2 and past.inventory["videos"].bytes == 4096
    assert [(p.outcome, p.bytes) for p in past.passes] == [("completed", 2000)]


def test_progress_share_follows_what_is_copied(tmp_path):
    s = store(tmp_path, what="videos")
    s.add_device(ID, "ETHOSCOPE_004", "169.254.1.4")
    s.apply(ev.Progressed(ID, "videos", 50, 10, 1.0, "a"))
    assert s.status.devices[ID].progress.percent == 50.0


def test_progress_of_two_trees_moving_at_once(tmp_path):
    """The videos are copied beside the results: the device's progress adds both up, whichever
    reported last, and a retry starts both again."""
    s = store(tmp_path)
    s.add_device(ID, "ETHOSCOPE_004", "169.254.1.4")
    device = s.status.devices[ID]
    s.apply(ev.Started(ID, 1, 1000.0))
    s.apply(ev.Progressed(ID, "videos", 60, 6000, 3000.0, "v"))
    s.apply(ev.Progressed(ID, "results", 20, 200, 1000.0, "r"))
    p = device.progress
    assert (p.percent, p.bytes, p.rate, p.kind, p.current_file) == (40.0, 6200, 4000.0, "results", "r")
    assert p.message == "copying results and videos"
    s.apply(ev.Progressed(ID, "videos", 80, 8000, 3000.0, "v"))
    assert device.progress.percent == 50.0 and device.progress.kind == "videos"     # results stay at 20
    s.apply(ev.Listed(ID, "results", ()))
    p = device.progress
    assert (p.percent, p.rate, p.message) == (90.0, 3000.0, "copying videos")       # results done
    s.apply(ev.Started(ID, 2, 1001.0))
    s.apply(ev.Progressed(ID, "videos", 10, 100, 10.0, "v"))
    assert device.progress.percent == 5.0 and device.progress.message == "copying results and videos"
    s.apply(ev.Listed(ID, "results", ()))
    s.apply(ev.Listed(ID, "videos", ()))
    assert device.progress.percent == 100.0 and device.progress.rate == 0.0


def test_unknown_events_are_errors(tmp_path):
    s = store(tmp_path)
    s.add_device(ID, "ETHOSCOPE_004", "169.254.1.4")
    with pytest.raises(TypeError):
        s.apply(("start", ID, {}))


def test_every_event_type_has_a_handler():
    assert set(StatusStore._HANDLERS) == set(ev.EVENTS)


def test_events_of_unknown_devices_are_ignored(tmp_path):
    s = store(tmp_path)
    s.apply(ev.Started("f" * 32, 1, 1.0))
    assert s.status.devices == {} and s.history.devices == {}


def test_failure_is_remembered_until_success(tmp_path):
    s = store(tmp_path)
    s.add_device(ID, "ETHOSCOPE_004", "169.254.1.4")
    finish_device(s, ok=False, message="ssh connection failed")
    assert s.status.devices[ID].state == "error" and s.status.devices[ID].error == "ssh connection failed"
    s.finish("failed", "1 failed", completed=False)
    save_history(tmp_path / "history.json", s.history)
    again = store(tmp_path, history=load_history(tmp_path / "history.json"))
    past = again.history.devices[ID]
    assert past.last_error == "ssh connection failed" and past.last_outcome == "error"
    assert past.inventory["videos"].files == 2          # carried over
    assert again.status.devices == {}


def test_a_pass_copying_nothing_is_marked_nothing(tmp_path):
    s = store(tmp_path)
    s.add_device(ID, "ETHOSCOPE_004", "169.254.1.4")
    s.apply(ev.Started(ID, 1, 1000.0))
    s.apply(ev.Finished(ID, True, "Backup completed successfully", 1001.0))
    assert [p.outcome for p in s.history.devices[ID].passes] == ["nothing"]


def test_passes_kept_are_bounded(tmp_path):
    s = store(tmp_path)
    for n in range(PASSES_KEPT + 5):
        s.add_device(ID, "ETHOSCOPE_004", "169.254.1.4")
        s.apply(ev.Started(ID, 1, float(n)))
        s.apply(ev.Finished(ID, True, "ok", float(n)))
    assert len(s.history.devices[ID].passes) == PASSES_KEPT
    assert s.history.devices[ID].passes[-1].ended == PASSES_KEPT + 4
    assert s.history.devices[ID].count == PASSES_KEPT + 5


def test_files_listed_are_bounded_and_keyed_by_path(tmp_path):
    s = store(tmp_path)
    s.add_device(ID, "ETHOSCOPE_004", "169.254.1.4")
    s.apply(ev.Started(ID, 1, 1.0))
    for n in range(FILES_LISTED + 10):
        s.apply(ev.FileReceived(ID, "videos", f"a/{n:05d}/x.h264", 1, 1, 1.0, 2.0))
    s.apply(ev.FileReceived(ID, "videos", "b/x.h264", 1, 1, 1.0, 2.0))   # same base name, other folder
    files = s.status.devices[ID].transfers["videos"].files
    assert len(files) == FILES_LISTED and "b/x.h264" in files and "a/00509/x.h264" in files
    assert s.status.devices[ID].transfers["videos"].files_received == FILES_LISTED + 11


def test_inventory_keeps_what_the_device_deleted(tmp_path):
    s = store(tmp_path)
    s.add_device(ID, "ETHOSCOPE_004", "169.254.1.4")
    s.apply(ev.Listed(ID, "videos", (("a", 10), ("b", 20))))
    s.apply(ev.Listed(ID, "videos", (("b", 25), ("c", 5))))     # a deleted on the device, b grew
    inventory = s.history.devices[ID].inventory["videos"]
    assert (inventory.files, inventory.bytes) == (3, 10 + 25 + 5)
    assert inventory.newest(1) == {"c": 5}


def test_last_backup_is_the_end_of_the_last_completed_pass(tmp_path):
    s = store(tmp_path)
    s.finish("interrupted", "x", completed=False)
    assert s.history.last_backup == 0 and not s.status.run.active
    s.finish("failed", "one device failed", completed=True)
    assert s.history.last_backup == 1000.0


def test_writes_are_throttled(tmp_path):
    s = store(tmp_path, interval=1.0)
    assert s.maybe_write(now=100.0)
    assert not s.maybe_write(now=100.5)
    assert s.maybe_write(now=101.1)


def test_status_round_trips_through_the_file(tmp_path):
    s = store(tmp_path)
    s.add_device(ID, "ETHOSCOPE_004", "169.254.1.4")
    finish_device(s)
    s.apply(ev.DatabaseChecked(ID, "x.db", "ok", 7, "recovered 7 rows"))
    s.write()
    assert load_status(tmp_path / "status.json") == s.status
    save_history(tmp_path / "history.json", s.history)
    assert load_history(tmp_path / "history.json") == s.history


def test_atomic_write_leaves_no_temp_and_valid_json(tmp_path):
    target = tmp_path / "sub" / "s.json"
    write_json_atomic(target, {"a": 1})
    write_json_atomic(target, {"a": 2})
    assert json.loads(target.read_text()) == {"a": 2}
    assert os.listdir(target.parent) == ["s.json"]
    assert oct(target.stat().st_mode & 0o777) == "0o644"


def test_history_of_the_first_version_and_garbage(tmp_path):
    path = tmp_path / "history.json"
    assert load_history(path) == History()
    path.write_text(json.dumps({"schema": 1, "last_backup": 5.0, "devices": {ID: {
        "name": "ETHOSCOPE_004", "last_success": 4.0, "last_outcome": "completed", "last_bytes": 9}}}))
    past = load_history(path)
    assert past.last_backup == 5.0 and past.devices[ID].last_success == 4.0 and past.devices[ID].name == "ETHOSCOPE_004"
    for garbage in ("{broken", "[1, 2]", '{"devices": 7, "last_backup": "soon"}', "[" * 100000):
        path.write_text(garbage)
        assert load_history(path).last_backup == 0.0


def test_a_status_of_another_schema_is_ignored(tmp_path):
    (tmp_path / "status.json").write_text(json.dumps({"schema": 1, "devices": {ID: {"status": "running"}}}))
    assert load_status(tmp_path / "status.json") == Status()


def test_device_of_a_killed_pass_is_not_left_running(tmp_path):
    s = store(tmp_path)
    s.add_device(ID, "ETHOSCOPE_004", "169.254.1.4")
    s.apply(ev.Started(ID, 1, 1000.0))
    s.write()                                   # the pass is killed here
    after = store(tmp_path, history=s.history, previous=load_status(tmp_path / "status.json"))
    past = after.history.devices[ID]
    assert past.last_outcome == "error" and "ended before" in past.last_error
    assert after.status.devices == {} and after.status.run.devices_total == 0


def test_status_file_is_lean(tmp_path):
    """100 devices x 500 files: the file a pass rewrites every second stays small. The first
    version wrote 86.1 MB for this same pass (every file record three times, with formatted
    copies of its numbers); this one 6.2 MB."""
    status, _ = build(scripted_pass(100, chunks=500))
    size = len(json.dumps(status, separators=(",", ":")))
    assert size < 86.1e6 / 10, size
    assert size / (100 * 501) < 130          # bytes per file record, all in


def test_devices_not_seen_for_long_are_retired_and_stay_pinned(tmp_path):
    """Devices gone for [status] retire_after leave the published state, their pins stay."""
    from ethoscope_rsync.state.history import DeviceHistory, PassSummary
    from ethoscope_rsync.render.upstream import status_document
    day, NOW = 86400.0, 1.7e9
    old, never, gone_unpinned, recent = "a" * 32, "b" * 32, "c" * 32, "d" * 32
    history = History(devices={
        ID: DeviceHistory(id=ID, name="ETHOSCOPE_004", pinned=True, last_success=0.0),      # in this pass
        old: DeviceHistory(id=old, name="ETHOSCOPE_010", pinned=True, last_success=NOW - 40 * day,
                           passes=[PassSummary(NOW - 31 * day, "error", 0)]),
        never: DeviceHistory(id=never, name="ETHOSCOPE_011", pinned=True),
        gone_unpinned: DeviceHistory(id=gone_unpinned, name="ETHOSCOPE_012", last_error_time=NOW - 60 * day),
        recent: DeviceHistory(id=recent, name="ETHOSCOPE_013", pinned=True, last_error_time=NOW - 29 * day)})
    s = store(tmp_path, history)
    s.add_device(ID, "ETHOSCOPE_004", "169.254.1.4")
    assert s.retire(NOW, 0) == []                                   # 0: never
    assert sorted(s.retire(NOW, 30 * day)) == ["ETHOSCOPE_010", "ETHOSCOPE_011", gone_unpinned]
    assert set(s.history.devices) == {ID, recent}
    assert s.history.retired == {old: "ETHOSCOPE_010", never: "ETHOSCOPE_011"}
    save_history(tmp_path / "history.json", s.history)
    reread = load_history(tmp_path / "history.json")
    assert reread.retired == s.history.retired
    doc = status_document(None, json.loads((tmp_path / "history.json").read_text()), NOW, day, horizon_days=14.0)
    assert set(doc["devices"]) == {ID, recent}
    # a retired device that answers again is published again, under the same pin
    s.add_device(old, "ETHOSCOPE_010", "169.254.1.10")
    s.apply(ev.Contacted(old, old, None))
    assert old not in s.history.retired and s.history.devices[old].pinned
