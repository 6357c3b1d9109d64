"""Each device on its own clock: which devices are due (pure), and the scheduled pass's loop, whose
device jobs are stand-ins here (the real ones run in tests/integration/test_schedule_lab.py)."""
import dataclasses
import queue
import threading

from ethoscope_rsync.backup.continuous import Scheduler, due_soon
from ethoscope_rsync.backup.job import Job, JobResult
from ethoscope_rsync.backup.schedule import Schedule, due, due_at, next_due
from ethoscope_rsync.config.devices import Device
from ethoscope_rsync.state import events as ev
from ethoscope_rsync.state.history import DeviceHistory, History, PassSummary
from ethoscope_rsync.state.model import COMPLETED, QUEUED, Status, DeviceRun
from ethoscope_rsync.state.store import StatusStore

SLOW = Device("ETHOSCOPE_001", "169.254.9.1", "1" * 32)
FAST = Device("ETHOSCOPE_002", "169.254.9.2", "2" * 32)
OTHER = Device("ETHOSCOPE_003", "169.254.9.3", "3" * 32)


def test_a_device_is_due_its_interval_after_its_own_last_copy_ended():
    assert due_at(0.0, 300) == 0.0                      # never copied: at once
    assert due_at(1000.0, 300) == 1300.0
    ends = {"a": 1000.0, "b": 900.0, "c": 0.0, "d": 1250.0}
    assert due({**ends}, (), 1300.0, 300) == ["c", "b", "a"]       # longest overdue first
    assert due(ends, {"c"}, 1300.0, 300) == ["b", "a"]              # a running device is never due
    assert due(ends, (), 1299.0, 300) == ["c", "b"]
    assert next_due({"a": 1000.0, "d": 1250.0}, (), 300) == 1300.0
    assert next_due({"a": 1000.0}, {"a"}, 300) is None


def test_a_pass_lingers_at_most_half_an_interval():
    assert Schedule.every(300).linger == 60 and Schedule.every(3).linger == 1.5


def test_a_scheduled_pass_with_nothing_due_soon_does_nothing():
    history = History(devices={FAST.key: DeviceHistory(last_success=1000.0)})
    schedule = Schedule(300, linger=60)
    assert not due_soon([FAST], history, schedule, 1100.0)
    assert due_soon([FAST], history, schedule, 1240.0)              # due within the linger
    assert due_soon([FAST, OTHER], history, schedule, 1100.0)        # never copied


class Clock:
    """Time that moves one second at each look (the loop's waits are real but short)."""

    def __init__(self, at=10_000.0):
        self.at = at
        self.lock = threading.Lock()

    def __call__(self):
        with self.lock:
            self.at += 1.0
            return self.at


def scheduler_for(config, tmp_path, devices, worker, history=None, previous=None, interval=10.0, linger=5.0):
    clock = Clock()
    store = StatusStore(tmp_path / "status.json", history or History(), previous, pid=1, what="unified",
                        interval=60, clock=clock)
    for device in devices:
        store.add_device(device.id, device.name, device.address)
    job = Job(config=config, key="/k", bwlimit_kib=0, stamp="S", control_dir="", events=queue.Queue(),
              stop=threading.Event())
    scheduler = Scheduler(job, store, Schedule(interval, linger=linger), clock=clock, monotonic=clock,
                          worker=worker)
    scheduler.tick = 0.01                      # the clock moves at each look: no need to wait long
    scheduler.add(devices)
    return scheduler, store, job


def copy(job, device, ok=True):
    job.events.put(ev.Started(device.key, 1, 0.0))
    job.events.put(ev.Finished(device.key, ok, "done" if ok else "failed", 0.0))
    return JobResult(device, ok, "done")


def test_a_slow_device_holds_nobody_while_the_others_are_copied_again(config, tmp_path):
    config = config.changed(transfer={"jobs": 4})
    fast_copies, released, by_count = [], threading.Event(), []

    def worker(job, device):
        if device is SLOW or device.key == SLOW.key:
            by_count.append(released.wait(timeout=30))      # until the fast device was copied 4 times
            job.stop.set()                                   # then the pass ends
            return copy(job, device)
        fast_copies.append(device.name)
        if len(fast_copies) >= 4:
            released.set()
        return copy(job, device)

    scheduler, store, _ = scheduler_for(config, tmp_path, [SLOW, FAST], worker)
    results = scheduler.run(lambda batch: [store.apply(e) for e in batch])
    assert by_count == [True]                  # the slow copy ended because the fast one went on, not by time
    assert len(fast_copies) >= 4
    assert {r.device.name for r in results} == {SLOW.name, FAST.name}
    assert store.status.run.devices_done == store.status.run.devices_total == 2    # one truth, never above


def test_jobs_bounds_the_copies_at_once_and_nobody_is_starved(config, tmp_path):
    config = config.changed(transfer={"jobs": 1})
    devices = [SLOW, FAST, OTHER]
    order, at_once, running = [], [], []
    lock = threading.Lock()

    def worker(job, device):
        with lock:
            running.append(device.name)
            at_once.append(len(running))
            order.append(device.name)
        result = copy(job, device)
        with lock:
            running.remove(device.name)
        if len(order) >= 9:
            job.stop.set()
        return result

    scheduler, store, _ = scheduler_for(config, tmp_path, devices, worker, interval=3.0)
    scheduler.run(lambda batch: [store.apply(e) for e in batch])
    assert max(at_once) == 1
    assert [order[i:i + 3] for i in range(0, 9, 3)] == [sorted(order[:3])] * 3   # round robin, oldest first


def test_a_device_not_due_keeps_its_last_record_until_its_turn(config, tmp_path):
    now = 10_000.0
    history = History(devices={FAST.key: DeviceHistory(id=FAST.id, name=FAST.name, last_success=now - 2,
                                                       passes=[PassSummary(now - 2, COMPLETED, 5)])})
    earlier = DeviceRun(FAST.id, FAST.name, FAST.address, state=COMPLETED, started=now - 3, ended=now - 2,
                        error="", warnings=["kept from the last copy"])
    previous = Status(devices={FAST.key: earlier})
    seen = []

    def worker(job, device):
        seen.append((device.name, store.status.devices[FAST.key].warnings[:]))
        job.stop.set()
        return copy(job, device)

    scheduler, store, job = scheduler_for(config, tmp_path, [FAST], worker, history=history, previous=previous,
                                          interval=20.0, linger=60.0)
    assert store.status.devices[FAST.key].state == COMPLETED            # carried, not "queued"
    assert store.status.devices[FAST.key].warnings == ["kept from the last copy"]
    assert store.status.run.devices_done == 1
    scheduler.run(lambda batch: [store.apply(e) for e in batch])
    assert seen == [(FAST.name, ["kept from the last copy"])]            # its turn came within the linger
    assert store.status.devices[FAST.key].state == COMPLETED
    assert store.status.run.devices_done == 1


def test_a_pass_stopped_starts_nothing_more_and_ends(config, tmp_path):
    starts = []

    def worker(job, device):
        starts.append(device.name)
        job.stop.set()
        return copy(job, device)

    scheduler, store, _ = scheduler_for(config, tmp_path, [FAST], worker, interval=1.0, linger=600.0)
    scheduler.run(lambda batch: [store.apply(e) for e in batch])
    assert starts == [FAST.name]


def test_later_discovery_adds_devices_and_the_history_is_saved(config, tmp_path):
    copies, saves, asked = [], [], []

    def worker(job, device):
        copies.append(device.name)
        if device.name == OTHER.name:
            job.stop.set()
        return copy(job, device)

    def rediscover(known):
        asked.append(sorted(known))
        store.add_device(OTHER.id, OTHER.name, OTHER.address)
        return [OTHER]

    scheduler, store, _ = scheduler_for(config, tmp_path, [FAST], worker, interval=1000.0, linger=2000.0)
    scheduler.schedule = dataclasses.replace(scheduler.schedule, rediscover=3.0, checkpoint=1.0)
    scheduler.run(lambda batch: [store.apply(e) for e in batch], save=lambda: saves.append(1), rediscover=rediscover)
    assert copies == [FAST.name, OTHER.name]
    assert asked[0] == [FAST.key]
    assert saves
    assert store.status.devices[OTHER.key].state == COMPLETED and store.status.devices[FAST.key].state == COMPLETED
    assert QUEUED not in {d.state for d in store.status.devices.values()}


def test_a_device_paused_while_the_pass_runs_is_not_copied_again(config, tmp_path):
    """`ethoscope-backup pause` during a long scheduled pass: the device leaves the pass at its next turn
    (the others go on), its last record kept."""
    copies, paused = [], set()

    def worker(job, device):
        copies.append(device.name)
        if device.name == SLOW.name:
            paused.add(SLOW.key)                     # paused while its first copy ran
        if copies.count(FAST.name) >= 3:
            job.stop.set()
        return copy(job, device)

    scheduler, store, _ = scheduler_for(config.changed(transfer={"jobs": 1}), tmp_path, [SLOW, FAST], worker,
                                        interval=2.0, linger=600.0)
    scheduler.paused = lambda ready: {d.key for d in ready} & paused
    scheduler.run(lambda batch: [store.apply(e) for e in batch])
    assert copies.count(SLOW.name) == 1 and copies.count(FAST.name) == 3
    assert store.status.devices[SLOW.key].state == COMPLETED


def test_devices_waiting_for_a_slot_are_not_looked_at_until_one_frees(config, tmp_path, monkeypatch):
    """With every slot taken the loop waits for a job to end (its wake) or a tick, never spins; and only
    the devices that get a free slot are checked for a pause (a file read)."""
    from ethoscope_rsync.backup import continuous
    waits, asked, release = [], [], threading.Event()
    drain = continuous._drain

    def recorded(events, wait):
        waits.append(wait)
        if len(waits) >= 5:
            release.set()
        return drain(events, wait)
    monkeypatch.setattr(continuous, "_drain", recorded)

    def worker(job, device):
        if device.name == SLOW.name:
            assert release.wait(timeout=30)                 # until the loop looked five times meanwhile
        job.stop.set()
        return copy(job, device)

    scheduler, store, _ = scheduler_for(config.changed(transfer={"jobs": 1}), tmp_path, [SLOW, FAST, OTHER],
                                        worker)
    scheduler.paused = lambda ready: asked.append([d.name for d in ready]) or set()
    scheduler.tick = 0.05
    scheduler.run(lambda batch: [store.apply(e) for e in batch])
    assert asked == [[SLOW.name]]                  # FAST and OTHER waited for the slot; the pass was stopped
    assert waits[:5] == [0.05] * 5                 # the slot taken and two devices due: a tick, not 0.01
