"""The status store: events applied by the single writer, atomic files, history."""
import json
import os

from ethoscope_rsync.status import Event, StatusBook, load_history, read_json, save_history, write_json_atomic

ID = "0123456789abcdef0123456789abcdef"


def book(tmp_path, history=None, previous=None, interval=1.0):
    return StatusBook(tmp_path / "status.json", history or load_history(tmp_path / "none.json"), previous,
                      pid=42, what="unified", interval=interval,
                      directories={"results": tmp_path / "r", "videos": tmp_path / "v"})


def finish_device(b, ok=True, message="Backup completed successfully"):
    b.apply(Event("start", ID, dict(attempt=1, started=1000.0)))
    b.apply(Event("progress", ID, dict(kind="videos", percent=50, transferred=10, rate="1MB/s", current="a")))
    b.apply(Event("file", ID, dict(kind="videos", path=f"{ID}/ETHOSCOPE_004/ts/x.h264", size=2048,
                                   transferred=2048, start=1000.0, end=1001.0)))
    b.apply(Event("transfer", ID, dict(kind="videos", files=3, total_size=4096, exit_code=0, ok=True,
                                       message="success")))
    b.apply(Event("done", ID, dict(ok=ok, message=message, finished=1002.0)))


def test_device_lifecycle(tmp_path):
    b = book(tmp_path)
    b.add_device(ID, "ETHOSCOPE_004", "169.254.1.4", ID)
    entry = b.doc["devices"][ID]
    assert entry["status"] == "queued" and entry["progress"]["status"] == "queued"
    b.apply(Event("start", ID, dict(attempt=1, started=1000.0)))
    assert entry["status"] == "running" and entry["processing"] and entry["ended"] == 0
    b.apply(Event("progress", ID, dict(kind="videos", percent=50, transferred=10, rate="1MB/s", current="a")))
    assert entry["progress"]["backup_status"] == 75.0      # results done, videos half-way
    finish_device(b)
    assert entry["progress"]["status"] == "completed" and entry["progress"]["backup_status"] == 100.0
    assert entry["ended"] == 1002 and entry["last_success"] == 1002.0
    assert entry["transfer_details"]["videos"]["files"]["x.h264"]["size_human"] == "2.0 KB"
    assert entry["synced"]["videos"]["local_files"] == 3
    assert b.doc["disk_usage_summary"]["combined"]["total_size_bytes"] == 4096
    assert b.history["devices"][ID]["last_outcome"] == "completed"


def test_failure_is_remembered_until_success(tmp_path):
    b = book(tmp_path)
    b.add_device(ID, "ETHOSCOPE_004", "169.254.1.4", ID)
    finish_device(b, ok=False, message="ssh connection failed")
    entry = b.doc["devices"][ID]
    assert entry["status"] == "error" and entry["last_error"] == "ssh connection failed"
    b.finish("failed", "1 failed", success=False)
    b.write()
    again = book(tmp_path, history=b.history, previous=read_json(tmp_path / "status.json"))
    again.add_device(ID, "ETHOSCOPE_004", "169.254.1.4", ID)
    assert again.doc["devices"][ID]["last_error"] == "ssh connection failed"
    assert again.doc["devices"][ID]["synced"]["videos"]["local_files"] == 3   # carried over


def test_last_backup_only_after_success(tmp_path):
    b = book(tmp_path)
    b.finish("failed", "x", success=False)
    assert b.doc["last_backup"] == "" and b.history["last_backup"] == 0
    b.finish("success", "ok", success=True)
    assert b.doc["last_backup"] and b.history["last_backup"] > 0
    assert b.doc["status"] == "idle"


def test_writes_are_throttled(tmp_path):
    b = book(tmp_path, interval=1.0)
    assert b.maybe_write(now=100.0)
    assert not b.maybe_write(now=100.5)
    assert b.maybe_write(now=101.1)


def test_atomic_write_leaves_no_temp_and_valid_json(tmp_path):
    target = tmp_path / "sub" / "s.json"
    write_json_atomic(target, {"a": 1})
    write_json_atomic(target, {"a": 2})
    assert json.loads(target.read_text()) == {"a": 2}
    assert os.listdir(target.parent) == ["s.json"]
    assert oct(target.stat().st_mode & 0o777) == "0o644"


def test_history_roundtrip_and_garbage(tmp_path):
    path = tmp_path / "history.json"
    assert load_history(path) == {"schema": 1, "last_backup": 0.0, "devices": {}}
    save_history(path, {"schema": 1, "last_backup": 5.0, "devices": {ID: {"name": "ETHOSCOPE_004"}}})
    assert load_history(path)["devices"][ID]["name"] == "ETHOSCOPE_004"
    path.write_text("{broken")
    assert load_history(path)["last_backup"] == 0.0


def test_device_of_a_killed_pass_is_not_left_running(tmp_path):
    b = book(tmp_path)
    b.add_device(ID, "ETHOSCOPE_004", "169.254.1.4", ID)
    b.apply(Event("start", ID, dict(attempt=1, started=1000.0)))
    b.write()                                   # the pass is killed here
    after = book(tmp_path, previous=read_json(tmp_path / "status.json"))
    entry = after.doc["devices"][ID]
    assert entry["status"] == "error" and not entry["processing"]
    assert entry["progress"]["status"] == "error" and "ended before" in entry["last_error"]
    assert after.doc["run"]["devices_total"] == 0
