"""The node side of the integration tests that drive the real `ethoscope-backup` command line:
its destinations and configuration, and digests of what it holds."""
import hashlib
import os
import sqlite3
import subprocess
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PYTHON = "/usr/bin/python3"


class Node:
    """A backup destination + config for one lab, in a temp dir."""

    def __init__(self, lab, base: Path, extra: str = ""):
        self.lab, self.base = lab, base
        self.results, self.videos = base / "results", base / "videos"
        self.status_file, self.state = base / "run" / "status.json", base / "state"
        self.conf = base / "backup.conf"
        text = lab.config_text(self.results, self.videos, self.status_file, self.state,
                               self.state / "known_hosts")
        self.conf.write_text(text + "[transfer]\nio_timeout = 15\nretry_delay = 0.5\nmin_free = 0\n" + extra)

    def run(self, *args, timeout=180, command="run"):
        return subprocess.run([PYTHON, "-m", "ethoscope_rsync", command, "-c", str(self.conf), *args],
                              cwd=ROOT, capture_output=True, text=True, timeout=timeout)

    def status(self):
        """/status as the status service renders it from the files this node's passes wrote."""
        return rendered_status(self.status_file, self.state / "history.json")

    def device_status(self, device):
        return self.status()["devices"][device.id]


def rendered_status(status_file: Path, history_file: Path) -> dict:
    """The /status document the web service serves for these two files (render is its only author)."""
    from ethoscope_rsync.render.upstream import status_document
    from ethoscope_rsync.state.store import read_json
    return status_document(read_json(status_file), read_json(history_file), time.time(), 86400.0, horizon_days=14.0)


def tree_digest(root: Path, skip_db=False):
    """{relative path: sha256} of the regular files under root, our hidden folders excluded."""
    digest = {}
    if not root.exists():
        return digest
    for path in sorted(root.rglob("*")):
        relative = path.relative_to(root)
        if any(part.startswith(".ethoscope-backup") for part in relative.parts) or not path.is_file():
            continue
        if skip_db and path.name.endswith((".db", ".db-wal", ".db-shm")):
            continue
        digest[str(relative)] = hashlib.sha256(path.read_bytes()).hexdigest()
    return digest


def db_rows(path: Path) -> dict:
    """{table: row count} of a database, opened read-only (WAL content included when present)."""
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
        tables = [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        return {t: db.execute(f'SELECT count(*) FROM "{t}"').fetchone()[0] for t in tables}


def integrity(path: Path) -> str:
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
        return db.execute("PRAGMA integrity_check").fetchone()[0]


def inodes(root: Path) -> dict:
    return {str(p): (p.stat().st_ino, p.stat().st_mtime_ns) for p in root.rglob("*") if p.is_file()
            and ".ethoscope-backup" not in str(p)}


def env_without_listen():
    env = dict(os.environ)
    for key in ("LISTEN_PID", "LISTEN_FDS", "NOTIFY_SOCKET"):
        env.pop(key, None)
    return env
