"""A device's job as pure code: processes are scripted fakes, so retries, backoff, messages, stage
order and database selection are tested without sshd, root or a network."""
import contextlib
import dataclasses
import queue
import sqlite3
import threading

import pytest

from ethoscope_rsync import events as ev
from ethoscope_rsync.config import load_config
from ethoscope_rsync.devices import Device
from ethoscope_rsync.execute import Result
from ethoscope_rsync.jobs import Job, backup_device, databases_to_recover
from ethoscope_rsync.livedb import READY_PREFIX
from ethoscope_rsync.rsync import FILE_MARK, FileEvent

MID = "0123456789abcdef0123456789abcdef"
DEVICE = Device(name="ETHOSCOPE_004", address="169.254.9.4", id=MID)
DB = f"{MID}/ETHOSCOPE_004/2025-03-08_10-00-00/2025-03-08_10-00-00_{MID}.db"
CHUNK = f"{MID}/ETHOSCOPE_004/2025-03-08_10-00-00/2025-03-08_10-00-00_{MID}_00001.h264"


def stage(argv) -> str:
    """Which stage of the job an rsync argv is."""
    if "--include=*.db" in argv:
        return "results:raw"
    if "--exclude=*.db" in argv:
        return "results:skip"
    return "videos" if argv[-2].endswith("/videos/") else "results:all"


def file_line(itemize, size, name):
    return f"{FILE_MARK} {itemize} {size} {size if itemize[0] == '>' else 0} {name}"


@dataclasses.dataclass
class Step:
    """What one scripted rsync prints and how it exits."""
    lines: tuple = ()
    code: int = 0
    stderr: str = ""
    effect: object = None          # called before it exits (e.g. writes the raw mirror)


class FakeProcesses:
    """Stands in for ethoscope_rsync.execute: scripted answers per stage, a record of calls."""

    def __init__(self, script, ready=READY_PREFIX + '{"held": [], "failed": {}, "idle": []}'):
        self.script = {name: list(steps) for name, steps in script.items()}
        self.ready, self.calls = ready, []

    def stream(self, argv, on_record, *, timeout, stop=None):
        name = stage(argv)
        self.calls.append(name)
        steps = self.script.get(name) or [Step()]
        step = steps.pop(0) if len(steps) > 1 else steps[0]
        for line in step.lines:
            on_record(line)
        if step.effect:
            step.effect()
        return Result(tuple(argv), step.code, "", step.stderr)

    def run(self, argv, *, timeout, stop=None):
        self.calls.append("ssh -O exit" if "-O" in argv else "run")
        return Result(tuple(argv), 0, "", "")

    @contextlib.contextmanager
    def held(self, argv, *, stop=None):
        self.calls.append("holder")
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


@pytest.fixture
def config(tmp_path):
    conf = tmp_path / "backup.conf"
    conf.write_text(f"[paths]\nresults = {tmp_path}/results\nvideos = {tmp_path}/videos\n"
                    f"state_dir = {tmp_path}/state\nupstream_config = {tmp_path}/none\n"
                    f"[transfer]\nretries = 2\nretry_delay = 5\nmin_free = 0\n")
    return load_config(conf)


def run_job(config, processes, stop=None):
    job = Job(config=config, key="/k", bwlimit_kib=0, stamp="S", control_dir="/c", events=queue.Queue(),
              stop=stop or RecordingStop(), processes=processes)
    result = backup_device(job, DEVICE)
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


def test_stage_order_and_what_is_reported(config):
    raw_db = config.results_dir / ".ethoscope-backup" / "raw" / MID / DB
    fake = FakeProcesses({
        "results:skip": [Step((file_line(".f", 10, f"{MID}/ETHOSCOPE_004/notes.txt"),))],
        "results:raw": [Step((file_line(">f+++++++++", 8192, DB),), effect=lambda: make_db(raw_db, 3))],
        "videos": [Step(("   1,000  50%   1.00MB/s    0:00:01", file_line(">f+++++++++", 1000, CHUNK)))]})
    result, sent, _ = run_job(config, fake)
    assert result.ok and result.message == "Backup completed successfully"
    assert fake.calls == ["holder", "results:skip", "holder ready", "results:raw", "holder released",
                          "videos", "ssh -O exit"]
    kinds = [type(e).__name__ for e in sent]
    assert kinds == ["Started", "TransferEnded", "DatabaseChecked", "FileReceived", "Listed",
                     "Progressed", "FileReceived", "TransferEnded", "Listed", "Finished"]
    listed = {e.kind: dict(e.files) for e in sent if isinstance(e, ev.Listed)}
    node_size = (config.results_dir / DB).stat().st_size
    assert listed == {"results": {f"{MID}/ETHOSCOPE_004/notes.txt": 10, DB: node_size},
                      "videos": {CHUNK: 1000}}
    checked = next(e for e in sent if isinstance(e, ev.DatabaseChecked))
    assert (checked.path, checked.verdict, checked.rows) == (DB, "ok", 3)


def test_transient_failures_are_retried_with_backoff(config):
    lost = Step(code=12, stderr="rsync: connection unexpectedly closed\nrsync error: (code 12)\n")
    fake = FakeProcesses({"videos": [lost, lost, Step()]})
    result, sent, stop = run_job(dataclasses.replace(config, what="videos"), fake)
    assert result.ok
    assert stop.waits == [5.0, 10.0]
    assert [e.attempt for e in sent if isinstance(e, ev.Started)] == [1, 2, 3]
    assert fake.calls.count("videos") == 3


def test_retries_are_bounded_and_the_message_carries_rsync_s_own_line(config):
    lost = Step(code=12, stderr="rsync: connection unexpectedly closed (0 bytes received so far)\n")
    fake = FakeProcesses({"videos": [lost]})
    result, sent, stop = run_job(dataclasses.replace(config, what="videos"), fake)
    assert not result.ok and fake.calls.count("videos") == 3 and stop.waits == [5.0, 10.0]
    assert result.message == ("error in rsync protocol data stream (connection lost): "
                              "rsync: connection unexpectedly closed (0 bytes received so far)")
    assert sent[-1] == ev.Finished(MID, False, result.message, sent[-1].at)


@pytest.mark.parametrize("code,stderr,expected", [
    (23, "rsync: send_files failed to open \"x\": Permission denied (13)\n", "partial transfer due to error"),
    (255, "@@@ WARNING: REMOTE HOST IDENTIFICATION HAS CHANGED! @@@\n", "forget-host ETHOSCOPE_004"),
    (11, "rsync: write failed on \"x\": No space left on device (28)\n", "destination full"),
])
def test_permanent_failures_are_not_retried(config, code, stderr, expected):
    fake = FakeProcesses({"videos": [Step(code=code, stderr=stderr)]})
    result, _, stop = run_job(dataclasses.replace(config, what="videos"), fake)
    assert not result.ok and expected in result.message
    assert fake.calls.count("videos") == 1 and stop.waits == []


def test_a_stop_request_ends_the_job_without_retry(config):
    stop = RecordingStop()
    lost = Step(code=12, effect=stop.set)
    fake = FakeProcesses({"videos": [lost]})
    result, _, _ = run_job(dataclasses.replace(config, what="videos"), fake, stop)
    assert not result.ok and fake.calls.count("videos") == 1 and stop.waits == []


def test_no_room_means_no_transfer(config):
    result, _, _ = run_job(dataclasses.replace(config, min_free_bytes=1 << 62), fake := FakeProcesses({}))
    assert not result.ok and "not enough free space" in result.message
    assert fake.calls == ["ssh -O exit"]


def test_an_unverified_database_fails_the_attempt_and_is_retried(config):
    raw_db = config.results_dir / ".ethoscope-backup" / "raw" / MID / DB

    def torn():
        raw_db.parent.mkdir(parents=True, exist_ok=True)
        raw_db.write_bytes(b"SQLite format 3\x00" + b"\xff" * 4000)

    fake = FakeProcesses({"results:raw": [Step((file_line(">f+++++++++", 4016, DB),), effect=torn)]})
    result, sent, stop = run_job(dataclasses.replace(config, what="results"), fake)
    assert not result.ok and "database copy(ies) not verified, previous copy kept" in result.message
    assert fake.calls.count("results:raw") == 3 and stop.waits == [5.0, 10.0]
    assert not (config.results_dir / DB).exists()
    assert {e.verdict for e in sent if isinstance(e, ev.DatabaseChecked)} == {"kept previous copy"}


def test_databases_to_recover(tmp_path):
    raw, node = tmp_path / "raw", tmp_path / "node"
    for name in ("a/new.db", "a/kept.db", "b/changed.db"):
        (raw / name).parent.mkdir(parents=True, exist_ok=True)
        (raw / name).write_bytes(b"x")
    (node / "a").mkdir(parents=True)
    (node / "a" / "kept.db").write_bytes(b"x")
    received = [FileEvent(">f.st......", 5, 5, "b/changed.db-wal"), FileEvent(">f+++++++++", 5, 5, "c/notes.txt")]
    assert databases_to_recover(raw, node, received) == ["a/new.db", "b/changed.db"]
