"""The fakes of the device job's unit tests: scripted processes (what each rsync prints and how it
exits, the probe's answer, the holder) standing in for :mod:`ethoscope_rsync.system.execute`, a recording
stop event, and a job run on them."""
import contextlib
import dataclasses
import queue
import sqlite3
import threading

from ethoscope_rsync.state import events as ev
from ethoscope_rsync.config.devices import Device
from ethoscope_rsync.system.execute import Result
from ethoscope_rsync.backup.job import Job, backup_device
from ethoscope_rsync.backup.livedb import READY_PREFIX
from ethoscope_rsync.backup.probe import MARK
from ethoscope_rsync.backup.rsync import FILE_MARK

MID = "0123456789abcdef0123456789abcdef"
DEVICE = Device(name="ETHOSCOPE_004", address="169.254.9.4", id=MID)
DB = f"{MID}/ETHOSCOPE_004/2025-03-08_10-00-00/2025-03-08_10-00-00_{MID}.db"
CHUNK = f"{MID}/ETHOSCOPE_004/2025-03-08_10-00-00/2025-03-08_10-00-00_{MID}_00001.h264"


def stage(argv) -> str:
    """Which stage of the job an rsync argv is."""
    if "--exclude=*" in argv:
        return "results:raw"
    if "--exclude=*.db" in argv:
        return "results:skip"
    return "videos" if argv[-2].endswith(f"/videos/{MID}/") else "results:all"


def file_line(itemize, size, name):
    """An rsync --out-format line; names are relative to the device's folder, as rsync prints them."""
    return f"{FILE_MARK} {itemize.ljust(11)} {size} {size if itemize[0] == '>' else 0} {name.removeprefix(MID + '/')}"


def probe_answer(databases=(), machine_id=MID, results=(MID,), videos=(MID,), cpu="flags : fpu aes\n"):
    """What the probe prints: `databases` are (path under the results root, size, mtime)."""
    stats = "".join(f"{size} {mtime} ./{path}\0" for path, size, mtime in databases)
    return (f"{MARK}machine-id\n{machine_id}\n{MARK}cpu\n{cpu}{MARK}results\n"
            + "".join(f"{n}\n" for n in results) + f"{MARK}videos\n" + "".join(f"{n}\n" for n in videos)
            + f"{MARK}databases\n{stats}\n{MARK}end\n")


@dataclasses.dataclass
class Step:
    """What one scripted rsync prints and how it exits."""
    lines: tuple = ()
    code: int = 0
    stderr: str = ""
    effect: object = None          # called before it exits (e.g. writes the raw mirror)
    cut: bool = False              # its output reached execute.run's cut_at: ended there


class FakeProcesses:
    """Stands in for ethoscope_rsync.system.execute: scripted answers per stage, a record of calls."""

    def __init__(self, script, ready=READY_PREFIX + '{"held": [], "failed": {}, "idle": []}', probe=None):
        self.script = {name: list(steps) for name, steps in script.items()}
        self.ready, self.calls, self.argvs = ready, [], []
        self.probe = probe if probe is not None else [Step((probe_answer(),))]

    def stream(self, argv, on_record, *, timeout, stop=None):
        name = stage(argv)
        self.calls.append(name)
        self.argvs.append(tuple(argv))
        steps = self.script.get(name) or [Step()]
        step = steps.pop(0) if len(steps) > 1 else steps[0]
        for line in step.lines:
            on_record(line)
        if step.effect:
            step.effect()
        return Result(tuple(argv), step.code, "", step.stderr)

    def run(self, argv, *, timeout, stop=None, cut_at=0):
        self.argvs.append(tuple(argv))
        if "-O" in argv:
            self.calls.append("ssh -O exit")
            return Result(tuple(argv), 0, "", "")
        self.calls.append("probe")
        step = self.probe.pop(0) if len(self.probe) > 1 else self.probe[0]
        if step.effect:
            step.effect()
        return Result(tuple(argv), step.code, "".join(step.lines)[:cut_at or None], step.stderr, cut=step.cut)

    @contextlib.contextmanager
    def held(self, argv, *, stop=None):
        self.calls.append("holder")
        self.argvs.append(tuple(argv))
        outer = self

        class Held:
            def ready_line(self, timeout):
                outer.calls.append("holder ready")
                return outer.ready

        yield Held()
        self.calls.append("holder released")


class RecordingStop(threading.Event):
    """The stop event: waits return at once and are recorded (the job's backoff)."""

    def __init__(self):
        super().__init__()
        self.waits = []

    def wait(self, timeout=None):
        self.waits.append(timeout)
        return self.is_set()


def run_job(config, processes, stop=None, known=None, device=DEVICE, ciphers=None, owners=None, node_aes=None):
    job = Job(config=config, key="/k", bwlimit_kib=0, stamp="S", control_dir="/c", events=queue.Queue(),
              stop=stop or RecordingStop(), processes=processes, known={MID: known or {}}, ciphers=ciphers or {},
              owners=owners or {}, node_aes=node_aes)
    result = backup_device(job, device)
    sent = []
    while not job.events.empty():
        sent.append(job.events.get())
    return result, sent, job.stop


def make_db(path, rows):
    path.parent.mkdir(parents=True, exist_ok=True)
    con = sqlite3.connect(path)
    con.execute("CREATE TABLE IF NOT EXISTS t (x)")
    con.executemany("INSERT INTO t VALUES (?)", [(n,) for n in range(rows)])
    con.commit()
    con.close()


LIVE = ((DB, 8192, "1700000000.5"), (DB + "-wal", 4120, "1700000001.5"), (DB + "-shm", 32768, "1700000001.5"))


def raw_copy(config, rows):
    return lambda: make_db(config.paths.results / ".ethoscope-backup" / "raw" / MID / DB, rows)


def without_videos(calls) -> list:
    """The calls of a job but its videos rsyncs, which run beside the results (in any order with them)."""
    assert calls.index("probe") < min((i for i, c in enumerate(calls) if c == "videos"), default=len(calls))
    return [call for call in calls if call != "videos"]


def lane(sent, kind) -> list:
    """The names of the events of one tree, in order (a database's verdict belongs to the results)."""
    return [type(e).__name__ for e in sent
            if getattr(e, "kind", "results" if isinstance(e, ev.DatabaseChecked) else None) == kind]
