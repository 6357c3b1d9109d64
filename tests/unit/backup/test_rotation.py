"""verify shared fairly by the devices: equal shares of [verify] time_limit, a device stopped by its
share resumes after its last checked file next time, databases checked in the videos tree too."""
import json
import threading

from ethoscope_rsync.backup import rotation, verify
from ethoscope_rsync.backup.verify import Item
from ethoscope_rsync.config.load import load_config
from ethoscope_rsync.state.history import DeviceHistory, History
from ethoscope_rsync.state.store import save_history

A, B = "a" * 32, "b" * 32


def items(*names):
    return [Item("/x/" + n, n, 1, "md5") for n in names]


def test_resume_goes_on_after_the_cursor_then_wraps_around():
    got = rotation.resume(items("c", "a", "d", "b"), "b")
    assert [i.shown for i in got] == ["c", "d", "a", "b"]
    assert [i.shown for i in rotation.resume(items("b", "a"), "")] == ["a", "b"]


def test_each_device_gets_its_share_and_a_file_only_what_is_left_of_it():
    assert rotation.share(100.0, 4) == 25.0 and rotation.share(-5.0, 2) == 0.0
    assert rotation.allowed(3600.0, until=50.0, now=20.0) == 30.0
    assert rotation.allowed(10.0, until=50.0, now=20.0) == 10.0
    assert rotation.allowed(3600.0, until=50.0, now=50.0) is None


class FakeClock:
    def __init__(self):
        self.now = 1000.0

    def monotonic(self):
        return self.now

    def time(self):
        return self.now


def test_a_slow_device_uses_its_share_and_resumes_where_it_stopped(tmp_path, monkeypatch):
    conf = tmp_path / "backup.conf"
    conf.write_text("[paths]\nresults = %s\nvideos = %s\nstate_dir = %s\n[verify]\ntime_limit = 100\n" % (
        tmp_path / "results", tmp_path / "videos", tmp_path / "state"))
    config = load_config(conf)
    save_history(config.history_file, History(devices={A: DeviceHistory(id=A, name="ETHOSCOPE_001"),
                                                       B: DeviceHistory(id=B, name="ETHOSCOPE_002")}))
    for machine_id, name, count in ((A, "ETHOSCOPE_001", 5), (B, "ETHOSCOPE_002", 2)):
        for n in range(count):       # databases, in the videos tree (older devices mix file types)
            path = tmp_path / "videos" / machine_id / name / "ts" / f"{n}.db"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(b"x")
    clock, checked = FakeClock(), []

    def slow_check(item, stop, deadline):
        checked.append((item.shown.split("/")[1][0], item.shown.rsplit("/", 1)[1], item.check, deadline))
        clock.now += 30.0             # each file takes 30 s
        return ""

    monkeypatch.setattr(verify, "time", clock)
    monkeypatch.setattr(verify, "check_item", slow_check)
    assert verify.verify(config, 0, threading.Event()) == 0
    # A: half of 100 s -> two files (the second given only the 20 s left); B: the 40 s left -> both
    assert checked == [("a", "0.db", "database", 50.0), ("a", "1.db", "database", 20.0),
                       ("b", "0.db", "database", 40.0), ("b", "1.db", "database", 10.0)]
    records = json.loads(config.verify_file.read_text())["devices"]
    assert (records[A]["complete"], records[A]["files"], records[A]["cursor"].rsplit("/", 1)[1]) == (False, 2, "1.db")
    assert (records[B]["complete"], records[B]["cursor"]) == (True, "")
    checked.clear()
    verify.verify(config, 0, threading.Event())
    assert [c[1] for c in checked if c[0] == "a"] == ["2.db", "3.db"]            # goes on where it stopped
