"""The bounded pool that runs a pass's device jobs (:mod:`ethoscope_rsync.backup.job`) in worker threads,
while the calling thread — the pass's single status writer — applies their events as they come."""
from __future__ import annotations

import queue
from concurrent.futures import ThreadPoolExecutor

from ethoscope_rsync.backup.job import Job, backup_device


def share_bandwidth(total_kib: int, jobs: int, devices: int, trees: int = 1) -> int:
    """Per-transfer --bwlimit so that concurrent transfers together stay within the total: at most
    `jobs` devices at once, each copying `trees` trees at once (its results beside its videos)."""
    if not total_kib:
        return 0
    return max(1, total_kib // (max(1, min(jobs, devices)) * max(1, trees)))


def run_pool(job: Job, devices: tuple, on_tick) -> list:
    """Back up `devices` with at most config.jobs at once; call on_tick() from this thread
    whenever events arrived or every half second. Returns JobResults in device order."""
    with ThreadPoolExecutor(max_workers=job.config.transfer.jobs, thread_name_prefix="job") as pool:
        futures = [pool.submit(backup_device, job, device) for device in devices]
        for future in futures:   # wake the writer the moment a job ends, not at its next poll
            future.add_done_callback(lambda _future: job.events.put(_WAKE))
        while not all(f.done() for f in futures):
            on_tick(_drain(job.events, 0.5))
        on_tick(_drain(job.events, 0))
        return [f.result() for f in futures]


_WAKE = object()


def _drain(events_queue: queue.Queue, timeout: float) -> list:
    batch = []
    try:
        batch.append(events_queue.get(timeout=timeout) if timeout else events_queue.get_nowait())
        while True:
            batch.append(events_queue.get_nowait())
    except queue.Empty:
        pass
    return [event for event in batch if event is not _WAKE]
