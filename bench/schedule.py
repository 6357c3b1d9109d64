"""Scenario 12, continuous protection (issue 20): the healthy devices' data age with a straggler.

N simulated devices; every few seconds a new video chunk is written on each healthy device (in
turn); one device is on a slow link with a long first copy ahead. What is measured is each new
chunk's age when it lands on the node (written -> on the node under its final name): the data a
dead card would have lost at worst. Three variants, one after the other on the same lab, each on a
fresh node whose healthy devices were first brought up to date:

* ``scheduled``: ``run --scheduled`` with ``[transfer] interval`` (each device on its own clock),
  restarted 30 s after it exits, as ethoscope-backup.timer does;
* ``scheduled, no straggler``: the same without the slow device (``-e`` the healthy ones);
* ``whole passes``: ``run`` (every device, waiting for all), the next started ``interval`` seconds
  after the previous ended: the scheduling before issue 20.

``BENCH_SCHEDULE_INTERVAL`` and ``BENCH_SCHEDULE_DURATION`` (seconds) change the interval (10) and the
length of each run (100). With an interval under about 70 s a pass without a straggler ends after each
round (it lingers half the interval) and the timer's 30 s gap adds to the age; with a straggler the
pass stays and copies each device on time.

Goal: the healthy devices' p95 with the straggler within 1.2 x of the run without it, and under
interval + 60 s. Chunks still not on the node when a run ends count with their age at that moment.
"""
from __future__ import annotations

import os
import statistics
import subprocess
import threading
import time

from bench.transfer import PYTHON, ROOT, Work, fresh_node, lab_name, row, runner_env
from tests.lab.lab import Lab

TIMER_GAP = 30.0          # ethoscope-backup.timer's OnUnitInactiveSec=


def _percentile(values, share):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(share * (len(ordered) - 1))))]


class Writer:
    """Writes a chunk on the healthy devices in turn every `every / len(devices)` seconds and
    watches for each to land on the node; ages() once stopped."""

    def __init__(self, lab, devices, node, every, size):
        self.lab, self.devices, self.node, self.every, self.size = lab, devices, node, every, size
        self.pending, self.ages, self.stop = {}, [], threading.Event()

    def run(self):
        gap, turn = self.every / len(self.devices), 0
        next_write = time.monotonic()
        while not self.stop.is_set():
            now = time.monotonic()
            if now >= next_write:
                device = self.devices[turn % len(self.devices)]
                path = self.lab.add_video_chunk(device, self.size)
                self.pending[self.node.videos / path.relative_to(device.data_root / "videos")] = time.monotonic()
                turn += 1
                next_write += gap
            for copy, written in list(self.pending.items()):
                if copy.is_file() and copy.stat().st_size == self.size:
                    self.ages.append(time.monotonic() - written)
                    del self.pending[copy]
            self.stop.wait(0.1)

    def finish(self):
        self.stop.set()
        end = time.monotonic()
        return self.ages + [end - written for written in self.pending.values()], len(self.pending)


def _variant(lab, work, name, healthy, slow, interval, duration, every, size, scheduled, with_slow):
    node = fresh_node(lab, work / "".join(c if c.isalnum() else "-" for c in name),
                      extra=f"interval = {interval}\nbwlimit = 40M\n")
    numbers = ",".join(d.name for d in healthy)
    subprocess.run([PYTHON, "-m", "ethoscope_rsync", "run", "-c", str(node.conf), "-e", numbers], cwd=ROOT,
                   env=runner_env(), capture_output=True, check=False, timeout=600)
    selection = [] if with_slow else ["-e", numbers]
    argv = [PYTHON, "-m", "ethoscope_rsync", "run", "-c", str(node.conf), *selection] + (
        ["--scheduled"] if scheduled else [])
    gap = TIMER_GAP if scheduled else interval
    writer = Writer(lab, healthy, node, every, size)
    thread = threading.Thread(target=writer.run, daemon=True)
    thread.start()
    ends = time.monotonic() + duration
    passes = 0
    while time.monotonic() < ends:
        proc = subprocess.Popen(argv, cwd=ROOT, env=runner_env(), stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        try:
            proc.wait(timeout=max(1.0, ends - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.terminate()
            proc.wait(timeout=120)
        passes += 1
        if time.monotonic() + gap < ends:
            time.sleep(gap)
        else:
            break
    time.sleep(max(0.0, ends - time.monotonic()))      # every variant measures for the whole duration
    ages, missing = writer.finish()
    thread.join(10)
    slow_copied = sum(p.stat().st_size for p in (node.videos / slow.id).rglob("*.h264")) if with_slow else 0
    return {"p50": round(statistics.median(ages), 1), "p95": round(_percentile(ages, 0.95), 1),
            "max": round(max(ages), 1), "chunks": len(ages), "not_arrived": missing, "starts": passes,
            "slow_bytes_copied": slow_copied}


def run(quick=False):
    n, duration, interval, every = (6, 25, 4, 2.0) if quick else (40, 100, 10, 5.0)   # quick: a smoke test
    interval = float(os.environ.get("BENCH_SCHEDULE_INTERVAL", interval))    # e.g. 75: the timer's gap covered
    duration = float(os.environ.get("BENCH_SCHEDULE_DURATION", duration))
    slow_size, slow_rate, size = (32 << 20 if quick else 96 << 20), "4mbit", 64 << 10
    out = {"devices": n, "duration_s": duration, "interval_s": interval, "write_every_s": every,
           "slow_first_copy_bytes": slow_size, "slow_rate": slow_rate, "bwlimit_total": "40M", "variants": {}}
    with Work("sched") as work, Lab(lab_name("sched"), n) as lab:
        slow, healthy = lab.devices[0], lab.devices[1:]
        for device in lab.devices:
            lab.add_video_chunk(device, size)
        lab.add_video_chunk(slow, slow_size)
        lab.rate_limit(slow, slow_rate)
        for name, scheduled, with_slow in (("scheduled", True, True), ("scheduled, no straggler", True, False),
                                           ("whole passes", False, True)):
            out["variants"][name] = _variant(lab, work, name, healthy, slow, interval, duration, every, size,
                                             scheduled, with_slow)
    v = out["variants"]
    ours, alone, before = v["scheduled"], v["scheduled, no straggler"], v["whole passes"]
    out["rows"] = [
        row("10 continuous protection", f"healthy p95 age, straggler vs none ({n} dev.)", ours["p95"], alone["p95"],
            target=1.2, note=f"p50 {ours['p50']}/{alone['p50']} s, max {ours['max']}/{alone['max']} s"),
        row("10 continuous protection", "healthy p95 age vs interval + 60 s", ours["p95"], target=interval + 60),
        row("10 continuous protection", "healthy p95 age: scheduled vs whole passes", ours["p95"], before["p95"],
            note=f"whole passes: p50 {before['p50']} s, max {before['max']} s, "
                 f"{before['not_arrived']} chunks never arrived"),
    ]
    return out
