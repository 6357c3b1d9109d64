"""Status documents for tests and benchmarks, written by the real store from a pass's events.

``scripted_pass`` makes the events a pass over ``n_devices`` simulated ethoscopes would send
(one database and ``chunks`` video chunks each, some devices failing); ``recorded_pass`` reads
the events of a real pass recorded on the simulated lab (``tests/fixtures/pass-events.json``,
see ``python3 -m tests.lab.record``). ``build`` feeds either through
:class:`ethoscope_rsync.status.StatusStore` and returns the status and history documents exactly
as a pass writes them.
"""
from __future__ import annotations

import dataclasses
import json
import os
import random
import tempfile
from pathlib import Path

from ethoscope_rsync import events as ev
from ethoscope_rsync import forecast
from ethoscope_rsync.history import DiskSample, History, Usage
from ethoscope_rsync.status import StatusStore, read_json, save_history

ROOT = Path(__file__).resolve().parents[1]
RECORDED = ROOT / "tests" / "fixtures" / "pass-events.json"
CHUNK = 64 << 20
NOW = 1795673957.0 + 3600              # an hour after example_pass ended
A, B = "a" * 32, "b" * 32


@dataclasses.dataclass(frozen=True)
class Pass:
    """A pass to replay: its devices (id, name, address) and its events in order."""
    devices: tuple
    events: tuple
    what: str = "unified"
    started: float = 0.0


def scripted_pass(n_devices: int = 100, chunks: int = 3, now: float = 1795673957.0, seed: int = 1,
                  running: bool = False, failing: float = 0.05, ids_seed: int | None = None) -> Pass:
    """`ids_seed`: the devices' machine ids come from this seed (the same devices in several passes)."""
    rnd = random.Random(seed)
    ids = random.Random(seed if ids_seed is None else ids_seed)
    started = now - 600
    devices, events = [], []
    for i in range(1, n_devices + 1):
        mid = "%032x" % (ids if ids_seed is not None else rnd).getrandbits(128)
        name = "ETHOSCOPE_%03d" % i
        devices.append((mid, name, "169.254.77.%d" % (10 + i % 240)))
        ts = "2025-03-%02d_10-00-00" % (1 + i % 28)
        folder = f"{mid}/{name}/{ts}"
        t = started + i
        fails, unfinished = rnd.random() < failing, running and i % 10 == 0
        events.append(ev.Started(mid, 1, t))
        db = f"{folder}/{ts}_{mid}.db"
        size = rnd.randint(10 ** 5, 10 ** 8)
        events.append(ev.TransferEnded(mid, "results", 0, True, "success"))
        events.append(ev.DatabaseChecked(mid, db, "ok", size // 100, f"recovered {size // 100} rows"))
        events.append(ev.FileReceived(mid, "results", db, size, size, t, t + 1))
        events.append(ev.Listed(mid, "results", ((db, size),)))
        listing = []
        for k in range(1, chunks + 1):
            chunk = f"{folder}/{ts}_{mid}_40f0_1280x960@25_{k:05d}.h264"
            events.append(ev.Progressed(mid, "videos", 100 * k // (chunks + 1), k * CHUNK, 4.5e6, chunk))
            events.append(ev.FileReceived(mid, "videos", chunk, CHUNK, CHUNK, t + k, t + k + 14.9))
            listing.append((chunk, CHUNK))
        if unfinished:
            continue
        if fails:
            events.append(ev.TransferEnded(mid, "videos", 12, False, "connection lost"))
            events.append(ev.Finished(mid, False, "error in rsync protocol data stream (connection lost)",
                                      t + 30))
        else:
            events.append(ev.TransferEnded(mid, "videos", 0, True, "success"))
            events.append(ev.Listed(mid, "videos", tuple(listing)))
            events.append(ev.Finished(mid, True, "Backup completed successfully", t + 30))
    return Pass(tuple(devices), tuple(events), started=started)


def example_pass(running=False):
    """Device A copies a database and two chunks; device B loses its link in the videos."""
    t = NOW - 3600 - 600
    db = f"{A}/ETHOSCOPE_001/2025-03-08_10-00-00/2025-03-08_10-00-00_{A}.db"
    old_db = f"{A}/ETHOSCOPE_001/2025-03-01_10-00-00/2025-03-01_10-00-00_{A}.db"
    chunk = f"{A}/ETHOSCOPE_001/2025-03-08_10-30-00/2025-03-08_10-30-00_{A}_40f0_1280x960@25_%05d.h264"
    events = [ev.Started(A, 1, t), ev.Started(B, 1, t),
              ev.FileReceived(A, "results", db, 106496, 100000, t + 1, t + 2),
              ev.DatabaseChecked(A, db, "ok", 1234, "recovered 1234 rows"),
              ev.TransferEnded(A, "results", 0, True, "success"),
              ev.Listed(A, "results", ((db, 106496), (old_db, 4096))),
              ev.Progressed(A, "videos", 50, 64 << 20, 4.5e6, chunk % 1)]
    for n in (1, 2):
        events.append(ev.FileReceived(A, "videos", chunk % n, 64 << 20, 64 << 20, t + 3 + n, t + 17 + n))
    if not running:
        events += [ev.TransferEnded(A, "videos", 0, True, "success"),
                   ev.Listed(A, "videos", tuple((chunk % n, 64 << 20) for n in (1, 2, 3))),
                   ev.Finished(A, True, "Backup completed successfully", t + 30),
                   ev.TransferEnded(B, "videos", 12, False, "connection lost"),
                   ev.Finished(B, False, "error in rsync protocol data stream (connection lost)", t + 40)]
    return Pass(((A, "ETHOSCOPE_001", "169.254.77.11"), (B, "ETHOSCOPE_002", "169.254.77.12")),
                tuple(events), started=t)


def add_history_device(history: dict, machine_id: str = "f" * 32, name: str = "ETHOSCOPE_017",
                       last_success: float = NOW - 3600) -> dict:
    """A device known only from the history (not in the last pass), as an older pass left it."""
    history["devices"][machine_id] = {"id": machine_id, "name": name, "last_outcome": "completed",
                                      "last_success": last_success, "last_bytes": 5, "count": 3}
    history["last_backup"] = max(history.get("last_backup", 0), last_success)
    return history


def _event_to_json(event) -> list:
    return [type(event).__name__, dataclasses.asdict(event)]


def _event_from_json(item):
    kind = {cls.__name__: cls for cls in ev.EVENTS}[item[0]]
    fields = item[1]
    if kind is ev.Listed:
        fields = dict(fields, files=tuple(tuple(pair) for pair in fields["files"]))
    return kind(**fields)


def save_pass(path: Path, recorded: Pass) -> None:
    """One device or event per line (a diff of two recordings reads well)."""
    lines = [json.dumps(list(d)) for d in recorded.devices], [json.dumps(_event_to_json(e)) for e in recorded.events]
    path.write_text('{"what": %s, "started": %r,\n"devices": [\n%s],\n"events": [\n%s]}\n'
                    % (json.dumps(recorded.what), recorded.started, ",\n".join(lines[0]), ",\n".join(lines[1])))


def recorded_pass(path: Path = RECORDED) -> Pass:
    data = json.loads(Path(path).read_text())
    return Pass(tuple(tuple(d) for d in data["devices"]), tuple(_event_from_json(e) for e in data["events"]),
                data["what"], data["started"])


class _Clock:
    """The store's clock, following the replayed events' own times."""

    def __init__(self, now: float):
        self.now = now

    def __call__(self) -> float:
        return self.now


def build(recorded: Pass, finish: bool = True, history: History | None = None) -> tuple:
    """Replay `recorded` through the real store; -> (status dict, history dict) as written on disk."""
    clock = _Clock(recorded.started)
    with tempfile.TemporaryDirectory() as tmp:
        status_path, history_path = Path(tmp) / "status.json", Path(tmp) / "history.json"
        store = StatusStore(status_path, history or History(), pid=os.getpid(), what=recorded.what, interval=0,
                            clock=clock)
        store.history.destinations = {"results": "/ethoscope_data/results", "videos": "/ethoscope_data/videos"}
        for machine_id, name, address in recorded.devices:
            store.add_device(machine_id, name, address)
        for event in recorded.events:
            clock.now = max(clock.now, getattr(event, "at", 0.0), getattr(event, "end", 0.0))
            store.apply(event)
        if finish:
            failed = store.status.run.devices_failed
            clock.now += 1
            store.finish("failed" if failed else "success", f"{failed} failed", completed=True)
        store.write()
        save_history(history_path, store.history)
        return read_json(status_path), read_json(history_path)


def write_pair(directory: str, recorded: Pass, finish: bool = True) -> tuple:
    """build() into `directory`/status.json and history.json; -> their paths."""
    status, history = build(recorded, finish)
    paths = os.path.join(directory, "status.json"), os.path.join(directory, "history.json")
    for path, doc in zip(paths, (status, history)):
        with open(path, "w") as handle:
            json.dump(doc, handle, separators=(",", ":"))
    return paths


def long_history(n_devices: int = 100, passes: int = 30, interval: float = 300.0, end: float = NOW,
                 files: int = 0) -> tuple:
    """(status, history) after `passes` scripted passes of `n_devices` through the real store (each
    device's strip full), with a week of disk samples as the passes' ends record them. `files`: the
    last pass lists that many video chunks on every device (a real device keeps days of them)."""
    history = History()
    status = None
    for k in range(passes):
        when = end - 3600 - (passes - k) * interval
        recorded = scripted_pass(n_devices, chunks=1 + k % 3, now=when, seed=k + 1, ids_seed=0)
        if files and k == passes - 1:
            recorded = _listing_pass(recorded, files)
        status, data = build(recorded, history=history)
        history = History.from_json(data)
    history.disk = disk_samples(end - 3600, days=7)
    return status, history.to_json()


def _listing_pass(recorded: Pass, files: int) -> Pass:
    """`recorded` with each device's videos listing grown to `files` chunks of CHUNK bytes."""
    events = []
    for event in recorded.events:
        if isinstance(event, ev.Listed) and event.kind == "videos" and event.files:
            folder = event.files[0][0].rsplit("/", 1)[0]
            event = dataclasses.replace(event, files=tuple((f"{folder}/chunk_{n:05d}.h264", CHUNK)
                                                           for n in range(files)))
        events.append(event)
    return dataclasses.replace(recorded, events=tuple(events))


def disk_samples(end: float, days: int = 7, shared: bool = False) -> list:
    """Hourly samples over `days` days up to `end`: results and videos on their own file systems
    (or one, `shared`), videos growing 80 GB a day towards a 4 TB disk, results 1 GB a day."""
    samples = []
    for hour in range(days * 24 + 1):
        t = end - (days * 24 - hour) * 3600.0
        videos = int(1.5e12 + hour * 80e9 / 24)
        results = int(40e9 + hour * 1e9 / 24)
        usage = {"results": Usage(int(1e12 - results), int(1e12), results, results // 2, 1),
                 "videos": Usage(int(4e12 - videos), int(4e12), videos, 0, 2)}
        if shared:
            free = int(4e12 - videos - results)
            usage = {kind: dataclasses.replace(u, free=free, total=int(4e12), fs=2) for kind, u in usage.items()}
        samples = forecast.add_sample(samples, forecast.with_growth(samples, DiskSample(t, usage)))
    return samples
