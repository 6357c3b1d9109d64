"""The node of the data-safety and hostile-input tests (real CLI, real rsync/sshd on the lab) and
their checks of files and processes."""
import hashlib
import os
import signal
import sqlite3
import subprocess
import time
from pathlib import Path
from tests.integration.backup_node import rendered_status
from tests.polling import wait_for  # noqa: F401 (re-exported for the safety tests)

ROOT = Path(__file__).resolve().parents[2]
PYTHON = "/usr/bin/python3"
PARTIAL = ".ethoscope-backup-partial"
HIDDEN = ".ethoscope-backup"

FAST_TRANSFER = {"io_timeout": 5, "retries": 0, "retry_delay": 0.2, "min_free": "0"}


class Backup:
    """A node-side destination, config file and status file for one lab, under `base`."""

    def __init__(self, lab, base, transfer=None, ssh=None, node=None, results=None, videos=None,
                 extra=""):
        self.lab, self.base = lab, Path(base)
        self.results = Path(results) if results else self.base / "results"
        self.videos = Path(videos) if videos else self.base / "videos"
        self.status_file = self.base / "run" / "status.json"
        self.state = self.base / "state"
        self.known_hosts = self.state / "known_hosts"
        self.conf = self.base / "backup.conf"
        self.transfer = dict(FAST_TRANSFER, **(transfer or {}))
        self.ssh = dict({"connect_timeout": 5}, **(ssh or {}))
        self.node = dict(node or {})
        self.extra = extra
        self.write_config()

    def write_config(self):
        text = self.lab.config_text(self.results, self.videos, self.status_file, self.state, self.known_hosts)
        # config_text ends inside [ssh]: more [ssh] keys go right after it
        text += "".join("%s = %s\n" % kv for kv in self.ssh.items())
        if self.node:
            text = text.replace("[node]\n", "[node]\n" + "".join("%s = %s\n" % kv for kv in self.node.items()), 1)
        text += "[transfer]\n" + "".join("%s = %s\n" % kv for kv in self.transfer.items())
        text += self.extra
        self.conf.parent.mkdir(parents=True, exist_ok=True)
        self.conf.write_text(text)

    def argv(self, *args, command="run"):
        return [PYTHON, "-m", "ethoscope_rsync", command, "-c", str(self.conf), *args]

    def run(self, *args, timeout=120, command="run"):
        return subprocess.run(self.argv(*args, command=command), cwd=ROOT, capture_output=True, text=True,
                              timeout=timeout, env=clean_env())

    def popen(self, *args, command="run"):
        """Start a pass in the background; output goes to files (read with .output(proc))."""
        out = open(self.base / ("out-%d.txt" % time.monotonic_ns()), "w+")
        proc = subprocess.Popen(self.argv(*args, command=command), cwd=ROOT, stdout=out,
                                stderr=subprocess.STDOUT, text=True, env=clean_env(), start_new_session=True)
        proc.out_file = out
        return proc

    @staticmethod
    def output(proc):
        proc.out_file.flush()
        proc.out_file.seek(0)
        return proc.out_file.read()

    def status(self):
        """/status as the status service renders it from the files this node's passes wrote."""
        return rendered_status(self.status_file, self.state / "history.json")

    def device(self, device):
        return self.status()["devices"][device.id]


def clean_env():
    env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1")
    for key in ("LISTEN_PID", "LISTEN_FDS", "NOTIFY_SOCKET", "CREDENTIALS_DIRECTORY"):
        env.pop(key, None)
    return env


def stop_process(proc, timeout=10):
    """Cleanup: kill a background pass (its whole session) if it still runs."""
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait(timeout)


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def visible_files(root):
    """{relative path: Path} of regular files under root, our hidden folders excluded."""
    root = Path(root)
    found = {}
    if not root.exists():
        return found
    for path in root.rglob("*"):
        relative = path.relative_to(root)
        if any(part.startswith(HIDDEN) for part in relative.parts):
            continue
        if path.is_file() and not path.is_symlink():
            found[str(relative)] = path
    return found


def partial_files(root):
    root = Path(root)
    return [p for p in root.rglob("*") if PARTIAL in p.parts and p.is_file()] if root.exists() else []


def db_integrity(path):
    con = sqlite3.connect("file:%s?mode=ro" % path, uri=True)
    try:
        return con.execute("PRAGMA integrity_check").fetchone()[0]
    finally:
        con.close()


def roi_rows(path, opened="mode=ro"):
    """Total rows in the ROI_n tracking tables (what the lab's writer appends to); `opened`: SQLite's URI
    parameters (immutable=1 for a private copy)."""
    con = sqlite3.connect("file:%s?%s" % (path, opened), uri=True)
    try:
        tables = [r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table' "
                                            "AND name LIKE 'ROI\\_%' ESCAPE '\\' AND name != 'ROI_MAP'")]
        return sum(con.execute('SELECT count(*) FROM "%s"' % t).fetchone()[0] for t in tables)
    finally:
        con.close()


def descendants(pid):
    """pids of every live process whose ancestry includes `pid` (from /proc)."""
    parents = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % entry) as f:
                fields = f.read().rsplit(")", 1)[1].split()
            parents[int(entry)] = int(fields[1])
        except (OSError, IndexError, ValueError):
            continue
    found, frontier = set(), {pid}
    while frontier:
        children = {p for p, parent in parents.items() if parent in frontier and p not in found}
        found |= children
        frontier = children
    return found


def processes_mentioning(text):
    """pids of live processes whose command line contains `text` (e.g. a lab's config path)."""
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open("/proc/%s/cmdline" % entry, "rb") as f:
                cmdline = f.read().replace(b"\0", b" ").decode("utf-8", "replace")
        except OSError:
            continue
        if text in cmdline and int(entry) != os.getpid():
            pids.append(int(entry))
    return pids


def in_flight(root, name=None, min_size=0):
    """rsync's temporary files (``.NAME.XXXXXX`` beside the final name) of files being received."""
    root = Path(root)
    if not root.exists():
        return []
    pattern = ".%s.*" % name if name else ".*.*"
    found = []
    for path in root.rglob(pattern):
        try:
            if path.is_file() and HIDDEN not in str(path.relative_to(root)) and path.stat().st_size >= min_size:
                found.append(path)
        except OSError:
            continue
    return found


def running(pid):
    """True if `pid` is alive and not a zombie (a zombie waits only for its parent to reap it)."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False
