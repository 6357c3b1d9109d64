"""A scheduled pass (``run --scheduled``, and ``daemon``): every device on its own clock.

The pass keeps its devices in one bounded pool (``[transfer] jobs``) and starts each device's next
copy once its interval has passed since its own last copy ended (:mod:`ethoscope_rsync.backup.schedule`),
while the others go on: a device on a slow link, or a long first copy, holds nobody. The calling thread
stays the single status writer (events through the job queue, as in :mod:`ethoscope_rsync.backup.pool`);
one lock and one process, so no device is ever copied twice at once. The pass ends when nothing runs
and no device is due within ``linger`` seconds (the timer starts the next pass), or on SIGTERM: no new
copy starts and the running ones stop as in any pass.
"""
from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

from ethoscope_rsync.backup.job import Job, backup_device
from ethoscope_rsync.backup.pool import _WAKE, _drain
from ethoscope_rsync.backup.schedule import Schedule, due, due_at, last_end, next_due
from ethoscope_rsync.system.logs import log

WAIT = 0.5        # seconds between two looks at the clock while waiting


def due_soon(devices, history, schedule: Schedule, now: float) -> bool:
    """Whether any of `devices` is due within the schedule's linger (a scheduled pass with none
    exits at once, leaving the status and the history as they are)."""
    upcoming = next_due({d.key: last_end(history.devices.get(d.key)) for d in devices}, (), schedule.interval)
    return upcoming is not None and upcoming - now <= schedule.linger


class Scheduler:
    """The devices of one scheduled pass, their last copy ends and their running jobs."""

    def __init__(self, job: Job, store, schedule: Schedule, clock=time.time, monotonic=time.monotonic,
                 worker=backup_device, paused=lambda devices: ()):
        self.job, self.store, self.schedule, self.worker = job, store, schedule, worker
        self.paused = paused      # -> the keys of those of the devices paused since the pass began
        self.tick = WAIT
        self.clock, self.monotonic = clock, monotonic
        self.devices: dict = {}       # key -> Device
        self.ends: dict = {}          # key -> when its last copy ended (0: never)
        self.running: dict = {}       # key -> the Future of its job
        self.results: dict = {}       # key -> its last JobResult of this pass
        self.copies = 0           # jobs started in this pass
        self.saved = self.discovered = monotonic()
        self.changed = False
        self.round = False        # every device of the pass copied at least once
        self.interrupted = False  # stopped while copies ran (a stop between copies ends the pass as usual)

    def add(self, devices) -> None:
        """Devices found (at the start, or by a later discovery), already added to the status; those
        not due yet keep their last job's record there until they are."""
        now = self.clock()
        for device in devices:
            if device.key in self.devices:
                continue
            self.devices[device.key] = device
            self.ends[device.key] = last_end(self.store.history.devices.get(device.key))
            if due_at(self.ends[device.key], self.schedule.interval) > now:
                self.store.carry(device.key)

    def _start(self, pool, key: str) -> None:
        device = self.devices[key]
        key = self.store.again(key, "copying: its interval has passed")
        entry = self.store.history.devices.get(key)
        if entry is not None:        # what this pass's earlier copies learnt of its databases
            self.job.known[key] = dict(entry.databases)
        future = pool.submit(self.worker, self.job, device)
        future.add_done_callback(lambda _future: self.job.events.put(_WAKE))
        self.running[key] = future
        self.copies += 1

    def _leave_paused(self, ready: list) -> list:
        """`ready` without the devices paused meanwhile (``ethoscope-backup pause``): they leave the
        pass, their last record kept."""
        held = set(self.paused([self.devices[key] for key in ready])) if ready else set()
        for key in held:
            self.devices.pop(key, None)
            self.ends.pop(key, None)
        return [key for key in ready if key not in held]

    def _collect(self) -> None:
        for key, future in list(self.running.items()):
            if not future.done():
                continue
            del self.running[key]
            result = future.result()
            if result.device.key != key:     # pinned at its first contact: known by its machine id now
                self.devices.pop(key, None)
                self.ends.pop(key, None)
                key = result.device.key
            self.devices[key], self.ends[key], self.results[key] = result.device, self.clock(), result
            self.changed = True
            if self.round or set(self.devices) <= set(self.results):
                if not self.round:     # saved at once: GET / shows a last backup from the first round on
                    self.saved = -float("inf")
                self.round = True
                self.store.history.last_backup = self.ends[key]   # as a pass's end: all copied since it began

    def run(self, on_tick, save=None, rediscover=None) -> list:
        """Copy each device whenever it is due until the pass ends; call on_tick(events) from this thread
        as events come (or every WAIT seconds), save() at most every checkpoint seconds after a job
        ended, rediscover() (-> new devices, added to the status) every rediscover seconds. Returns each
        device's last JobResult of this pass."""
        schedule, slots = self.schedule, self.job.config.transfer.jobs
        with ThreadPoolExecutor(max_workers=slots, thread_name_prefix="job") as pool:
            while True:
                now = self.clock()
                self.interrupted = self.interrupted or (self.job.stop.is_set() and bool(self.running))
                free = slots - len(self.running)
                if free > 0 and not self.job.stop.is_set():    # (only those that get a slot are asked)
                    ready = due(self.ends, self.running, now, schedule.interval)[:free]
                    for key in self._leave_paused(ready):
                        self._start(pool, key)
                upcoming = next_due(self.ends, self.running, schedule.interval)
                if not self.running and (self.job.stop.is_set() or upcoming is None
                                         or upcoming - now > schedule.linger):
                    break
                # every slot taken: the next look is when a job ends (it wakes the loop), not at once
                full = len(self.running) >= slots
                wait = self.tick if upcoming is None or full else min(self.tick, max(0.0, upcoming - now))
                on_tick(_drain(self.job.events, max(wait, 0.01)))
                self._collect()
                self._maintain(save, rediscover)
            on_tick(_drain(self.job.events, 0))
        return list(self.results.values())

    def _maintain(self, save, rediscover) -> None:
        moment = self.monotonic()
        if save is not None and self.changed and moment - self.saved >= self.schedule.checkpoint:
            self.saved, self.changed = moment, False
            try:
                save()
            except OSError as error:
                log.error("cannot write the history: %s: %s", error.strerror or error, error.filename or "")
        if (rediscover is not None and not self.job.stop.is_set()
                and moment - self.discovered >= self.schedule.rediscover):
            self.discovered = moment
            self.add(rediscover(set(self.devices)))
