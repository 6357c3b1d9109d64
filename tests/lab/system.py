"""Host-level helpers for the simulated lab: paths, subprocesses, processes, network namespaces, the host lock."""
import fcntl
import os
import signal
import socket
import subprocess
import time
from pathlib import Path

LAB_ROOT = Path("/var/tmp/ethoscope-lab")
MANIFESTS = LAB_ROOT / ".manifests"
PYTHON = "/usr/bin/python3"
REPO_ROOT = Path(__file__).resolve().parents[2]
DEVICE_USER = "ethoscope"


def _run(argv, check=True, input=None, timeout=60):
    p = subprocess.run(argv, input=input, capture_output=True, text=True, timeout=timeout)
    if check and p.returncode != 0:
        raise RuntimeError("%s failed (%d): %s" % (" ".join(argv), p.returncode, p.stderr.strip()))
    return p


def _atomic_write(path, text, mode=0o644):
    path = Path(path)
    tmp = path.with_name(".%s.tmp%d" % (path.name, os.getpid()))
    with open(tmp, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.chmod(tmp, mode)
    os.rename(tmp, path)


def _pid_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # zombies count as gone
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _cmdline(pid):
    try:
        with open("/proc/%d/cmdline" % pid, "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def _kill_wait(pids, timeout=5.0):
    """SIGKILL the pids and wait (bounded) until they are gone."""
    pids = [p for p in set(pids) if p and p > 1 and p != os.getpid()]
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + timeout
    for pid in pids:
        while _pid_alive(pid) and time.monotonic() < deadline:
            try:  # reap our own children
                os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                pass
            time.sleep(0.01)
        try:
            os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            pass


def _netns_list():
    p = _run(["ip", "netns", "list"], check=False)
    return [line.split()[0] for line in p.stdout.splitlines() if line.strip()]


def _netns_pids(ns):
    p = _run(["ip", "netns", "pids", ns], check=False)
    return [int(x) for x in p.stdout.split() if x.isdigit()]


def _link_exists(ifname):
    return os.path.exists("/sys/class/net/%s" % ifname)


def _is_mountpoint(path):
    try:
        with open("/proc/self/mountinfo") as f:
            return any(line.split()[4] == path for line in f)
    except OSError:
        return False


def _wait_tcp(addr, port, deadline):
    while True:
        try:
            with socket.create_connection((addr, port), timeout=0.5):
                return True
        except OSError:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.02)


def _rate_bits(rate):
    units = {"kbit": 1e3, "mbit": 1e6, "gbit": 1e9, "bit": 1, "kbps": 8e3, "mbps": 8e6, "gbps": 8e9}
    r = rate.strip().lower()
    for u in sorted(units, key=len, reverse=True):
        if r.endswith(u):
            return float(r[: -len(u)]) * units[u]
    return float(r)


class _Lock:
    """A host-wide lock serialising subnet/interface allocation between concurrently starting labs."""

    def __enter__(self):
        LAB_ROOT.mkdir(parents=True, exist_ok=True)
        self.f = open(LAB_ROOT / ".lock", "w")
        fcntl.flock(self.f, fcntl.LOCK_EX)
        return self

    def __exit__(self, *exc):
        fcntl.flock(self.f, fcntl.LOCK_UN)
        self.f.close()
