"""The reader of one rsync's output (``--info=progress2,name2 --out-format``): each record becomes what
the device's job knows (the listing of the device's folder, the files received) and the events the
pass's status is made of. It runs on the thread that reads rsync's pipe: whatever it costs a record,
rsync waits for when the pipe is full, so a progress record that is not reported costs one regular
expression and nothing else.
"""
from __future__ import annotations

import time

from ethoscope_rsync.state import events
from ethoscope_rsync.backup.listing import Listing
from ethoscope_rsync.backup.probe import inside
from ethoscope_rsync.backup.rsync import FILE_MARK, parse_file_line, parse_progress

PROGRESS_EVERY = 0.25        # seconds between two progress events of one tree (its last one always goes)


class OutputReader:
    """Called with each record of one rsync of the device's `folder` of tree `kind`; the events go
    on `queue` (FileReceived only when `report_files`: the raw mirror's copies are reported once
    recovered). After the run: `listing`, `records` (the rest, for --stats) and `outside` (names
    that would leave the device's folder: never used)."""

    def __init__(self, queue, key: str, kind: str, folder: str, report_files: bool = True, clock=time.monotonic,
                 wall=time.time):
        self.queue, self.key, self.kind, self.folder, self.report_files = queue, key, kind, folder, report_files
        self.clock, self.wall = clock, wall
        self.listing = Listing()
        self.records: list = []
        self.outside: list = []
        self.current, self.started, self.last_progress = "", wall(), -PROGRESS_EVERY

    def __call__(self, record: str) -> None:
        if record.startswith(FILE_MARK):
            self._file(record)
            return
        if "%" in record:          # progress2 records, most of what rsync prints
            progress = parse_progress(record)
            if progress is not None:
                now = self.clock()
                if now - self.last_progress >= PROGRESS_EVERY or progress.percent == 100:
                    self.last_progress = now
                    self.queue.put(events.Progressed(self.key, self.kind, progress.percent, progress.bytes,
                                                     progress.rate, self.current))
                return
        self.records.append(record)

    def _file(self, record: str) -> None:
        event = parse_file_line(record)
        if event is None:
            self.records.append(record)
            return
        if not event.is_file:
            return
        path = f"{self.folder}/{event.name}"
        if not inside(self.folder, path):
            self.outside.append(event.name)
            return
        self.listing.add(path, event.length)
        if event.changed:
            now = self.wall()
            if self.report_files:
                self.queue.put(events.FileReceived(self.key, self.kind, path, event.length, event.transferred,
                                                   self.started, now))
            self.started = now
        self.current = path
