"""What the simulated devices' CPUs spent on a pass: each device's listening sshd reaps every
connection it served, and with it every session, rsync sender, probe and holder those started (the
device is its own PID namespace, so even an orphan ends up reaped by it), so its utime + stime +
cutime + cstime in /proc, before and after, is the device's whole cost of the pass."""
from __future__ import annotations

import os
import time

TICK = os.sysconf("SC_CLK_TCK")


def _children(pid: int) -> list:
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as handle:
            return [int(child) for child in handle.read().split()]
    except OSError:
        return []


def listeners(lab) -> list:
    """The listening sshd of each device: the child of its ``unshare --fork``."""
    found = []
    for device in lab.devices:
        kids = _children(lab._procs[("sshd", device.index)].pid)
        if len(kids) != 1:
            raise RuntimeError(f"{device.name}: expected one sshd under its namespace's first process, found {kids}")
        found.append(kids[0])
    return found


def cpu_seconds(pids, settle: float = 10.0) -> float:
    """The CPU seconds of these processes and of every child they reaped, once each has no child
    left (the sessions of the pass just ended are reaped), waiting at most `settle` seconds."""
    deadline = time.monotonic() + settle
    while any(_children(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.02)
    total = 0
    for pid in pids:
        with open(f"/proc/{pid}/stat") as handle:
            fields = handle.read().rsplit(")", 1)[1].split()
        total += sum(int(value) for value in fields[11:15])    # utime stime cutime cstime
    return total / TICK


def measured(lab, action):
    """Run `action()` -> (its result, the devices' CPU seconds per device it cost)."""
    pids = listeners(lab)
    before = cpu_seconds(pids)
    result = action()
    return result, (cpu_seconds(pids) - before) / len(pids)
