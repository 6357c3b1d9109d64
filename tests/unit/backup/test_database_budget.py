"""A device's database checks share a per-pass budget of time and CPU: those left are "not verified
yet" (said so, the node keeps its copy, the device's job does not fail) and go first next pass."""
import queue
import threading

from ethoscope_rsync.backup import databases
from ethoscope_rsync.backup.databases import DEFERRED, DatabaseWork, check_order, recover_all
from ethoscope_rsync.backup.job import Job
from ethoscope_rsync.backup.livedb import Verdict
from ethoscope_rsync.state import events as ev
from ethoscope_rsync.state.history import DatabaseRecord
from tests.unit.backup.job_fakes import DEVICE, MID


class FakeTime:
    """monotonic and thread_time that only the fake checks move."""

    def __init__(self):
        self.wall = self.cpu = 1000.0

    def monotonic(self):
        return self.wall

    def thread_time(self):
        return self.cpu


def paths(n):
    return tuple(f"{MID}/ETHOSCOPE_004/2025-03-0{i}_10-00-00/{i}.db" for i in range(1, n + 1))


def run_checks(config, monkeypatch, work_paths, wall_each, cpu_each, known=None):
    clock, checked, allowed = FakeTime(), [], []
    monkeypatch.setattr(databases, "time", clock)

    def fake_recover(job, device, path, sign, check_timeout, failed_copy):
        checked.append(path)
        allowed.append(check_timeout)
        clock.wall += wall_each
        clock.cpu += cpu_each
        job.events.put(ev.DatabaseChecked(device.key, path, "ok", 1, "", True, tuple(sign)))
        return Verdict(True, 1, "", True)

    monkeypatch.setattr(databases, "_recover_one", fake_recover)
    job = Job(config=config, key="/k", bwlimit_kib=0, stamp="S", control_dir="", events=queue.Queue(),
              stop=threading.Event(), known={MID: known or {}})
    work = DatabaseWork((), work_paths, False, ())
    on_device = {}
    known_all = {**{p: DatabaseRecord([1, 1, -1, ""], True, 1, "", 1.0) for p in work_paths}, **(known or {})}
    job.known[MID] = known_all
    result = recover_all(job, DEVICE, work, on_device, deadline=clock.wall + 10 ** 6)
    events = []
    while not job.events.empty():
        events.append(job.events.get())
    return result, checked, allowed, events


def test_the_time_budget_leaves_the_rest_for_the_next_pass(config, monkeypatch):
    config = config.changed(transfer={"database_budget": 100.0, "database_cpu_budget": 1000.0})
    (unverified, stopped, _), checked, allowed, events = run_checks(config, monkeypatch, paths(5), 40.0, 1.0)
    assert checked == list(paths(3))                       # 0, 40, 80 s spent before each: the third still starts
    assert allowed[0] == 300.0 and allowed[2] == 20.0      # a later one gets only what is left of the budget
    assert (unverified, stopped) == ([], False)            # not a failure of the device
    deferred = [e for e in events if isinstance(e, ev.DatabaseChecked) and e.verdict == DEFERRED]
    assert [e.path for e in deferred] == list(paths(5)[3:]) and not any(e.signature for e in deferred)
    assert any(isinstance(e, ev.Warned) and "2 database(s) not verified yet" in e.message for e in events)


def test_the_cpu_budget_too(config, monkeypatch):
    config = config.changed(transfer={"database_budget": 10_000.0, "database_cpu_budget": 50.0})
    _, checked, _, _ = run_checks(config, monkeypatch, paths(4), 30.0, 30.0)
    assert checked == list(paths(2))


def test_a_database_left_or_never_checked_goes_first_and_failed_ones_last():
    done = DatabaseRecord([1], True, 1, "", 1.0)
    failed = DatabaseRecord([1], False, 0, "took longer", 1.0)
    a, b, c = "a.db", "b.db", "c.db"
    assert check_order([a, b, c], {a: failed, b: done}) == [c, b, a]
