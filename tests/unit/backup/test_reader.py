"""The reader of one rsync's output: the listing, the files received, progress at most every quarter
second (its last record always), the rest kept for --stats, names leaving the folder set aside."""
import queue

from ethoscope_rsync.state import events as ev
from ethoscope_rsync.backup.reader import PROGRESS_EVERY, OutputReader
from ethoscope_rsync.backup.rsync import parse_stats
from tests.unit.backup.job_fakes import file_line

F = "0123456789abcdef0123456789abcdef"


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


def reader(report_files=True):
    clock = Clock()
    return OutputReader(queue.Queue(), F, "videos", F, report_files=report_files, clock=clock, wall=clock), clock


def sent(r) -> list:
    found = []
    while not r.queue.empty():
        found.append(r.queue.get())
    return found


def test_files_listed_and_received():
    r, clock = reader()
    r(file_line("cd+", 0, "E/2025"))                       # a folder: not a file
    r(file_line(">f+", 2048, "E/2025/a.h264"))             # received
    clock.now = 103.0
    r(file_line(".f", 4096, "E/2025/b.h264"))              # listed only (name2)
    assert r.listing.files == {f"{F}/E/2025/a.h264": 2048, f"{F}/E/2025/b.h264": 4096}
    assert sent(r) == [ev.FileReceived(F, "videos", f"{F}/E/2025/a.h264", 2048, 2048, 100.0, 100.0)]
    assert r.current == f"{F}/E/2025/b.h264" and r.records == [] and r.outside == []


def test_the_raw_mirror_s_copies_are_not_reported():
    r, _ = reader(report_files=False)
    r(file_line(">f+", 10, "E/x.db"))
    assert sent(r) == [] and r.listing.files == {f"{F}/E/x.db": 10}


def test_progress_at_most_every_quarter_second_and_always_its_end():
    r, clock = reader()
    r("     32,768   1%    1.00MB/s    0:00:10 (xfr#0, to-chk=2/3)")
    clock.now += PROGRESS_EVERY / 2
    r("     65,536   2%    1.00MB/s    0:00:10 (xfr#0, to-chk=2/3)")          # too soon: dropped
    clock.now += PROGRESS_EVERY / 2
    r("     98,304   3%    1.00MB/s    0:00:10 (xfr#0, to-chk=2/3)")
    r("  3,276,800 100%    1.00MB/s    0:00:03 (xfr#1, to-chk=0/3)")          # the end: always
    got = sent(r)
    assert [(e.percent, e.bytes) for e in got] == [(1, 32768), (3, 98304), (100, 3276800)]
    assert all(isinstance(e, ev.Progressed) and e.rate == 1 << 20 for e in got)


def test_the_rest_is_kept_for_the_stats_and_names_outside_set_aside():
    r, _ = reader()
    for record in ("Number of files: 7 (reg: 5, dir: 2)", "Total file size: 1,234 bytes",
                   "ETHOSCOPE-BACKUP-FILE garbage", "sent 10% of nothing"):
        r(record)
    r(file_line(">f+", 5, "../escape.h264"))
    assert parse_stats(r.records).files == 5 and parse_stats(r.records).total_size == 1234
    assert r.records[2:] == ["ETHOSCOPE-BACKUP-FILE garbage", "sent 10% of nothing"]
    assert r.outside == ["../escape.h264"] and r.listing.files == {} and sent(r) == []
