"""Device cost of consistent live-database copies: the read holder versus on-device snapshots.

``/usr/bin/python3 -m bench.livedb_cost [--quick]``

A live writer keeps appending to a WAL database on the "device" (a local directory on ext4). Per pass:

* holder: CPU seconds and bytes written (``/proc/PID/io`` write_bytes while holding, ``ru_oublock``
  over its life) of the holder process while a real rsync copies db + wal; and, with the writer
  paused, the bytes of the .db/-wal that differ after a hold (must be 0);
* snapshot on the device: ``VACUUM INTO`` (what ``sqlite3 .backup`` costs too): CPU and bytes written;
* plain rsync of the .db (both ends, local): CPU of the rsync processes;
* node: ``recover_database`` wall time.
"""
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from ethoscope_rsync.backup import livedb

PY = "/usr/bin/python3"
WRITER = r'''
import os, sqlite3, sys, time
con = sqlite3.connect(sys.argv[1], isolation_level=None, timeout=30)
con.execute("PRAGMA busy_timeout=30000")
con.execute("PRAGMA journal_mode=WAL")
con.execute("PRAGMA synchronous=NORMAL")
while True:
    con.execute("BEGIN IMMEDIATE")
    for i in range(1, 21):
        con.execute("INSERT INTO ROI_%d (t, x, y, w, h, phi) VALUES (?,?,?,?,?,?)" % i, (1, 2, 3, 4, 5, 6))
    con.execute("COMMIT")
    time.sleep(0.05)
'''


def _build_db(path: Path, target_bytes: int) -> None:
    con = sqlite3.connect(str(path), isolation_level=None)
    con.execute("PRAGMA journal_mode=WAL")
    for i in range(1, 21):
        con.execute("CREATE TABLE ROI_%d (id INTEGER PRIMARY KEY, t INTEGER, x INTEGER, y INTEGER, w INTEGER,"
                    " h INTEGER, phi INTEGER)" % i)
    row = (1234567, 300, 40, 20, 10, 90)
    while path.stat().st_size < target_bytes:
        con.execute("BEGIN")
        for i in range(1, 21):
            con.executemany("INSERT INTO ROI_%d (t, x, y, w, h, phi) VALUES (?,?,?,?,?,?)" % i, [row] * 2000)
        con.execute("COMMIT")
        con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    con.close()


def _wait4(proc: subprocess.Popen):
    _, status, ru = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    return ru.ru_utime + ru.ru_stime, ru.ru_oublock * 512


def _proc_io(pid: int) -> int:
    with open("/proc/%d/io" % pid) as f:
        return int(dict(line.split(": ") for line in f.read().splitlines())["write_bytes"])


def _start_holder(root: Path):
    proc = subprocess.Popen([PY, "-c", livedb.HOLDER_SCRIPT, str(root), "120"],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    hold = livedb.parse_holder_ready(proc.stdout.readline())
    assert hold is not None and hold.held, hold
    return proc


def _changed_bytes(before: bytes, after: bytes) -> int:
    n = sum(1 for a, b in zip(before, after) if a != b)
    return n + abs(len(before) - len(after))


def run(quick: bool = False) -> dict:
    passes = 2 if quick else 5
    size = (8 if quick else 48) << 20
    work = Path(tempfile.mkdtemp(prefix="livedb-bench-", dir="/var/tmp"))
    try:
        root = work / "device" / "results"
        exp = root / ("a" * 32) / "ETHOSCOPE_001" / "2025-01-01_00-00-00"
        exp.mkdir(parents=True)
        db = exp / "2025-01-01_00-00-00_aaaa.db"
        wal = Path(str(db) + "-wal")
        _build_db(db, size)
        writer = subprocess.Popen([PY, "-c", WRITER, str(db)])
        raw, node = work / "node" / ".ethoscope-backup" / "raw", work / "node"
        raw.mkdir(parents=True)
        rel = db.relative_to(root)
        out = {"db_bytes": db.stat().st_size, "passes": []}
        try:
            time.sleep(1.0)
            for i in range(passes):
                p = {}
                # 1. side effects of a hold on db/-wal, writer paused so that only the holder could change them
                writer.send_signal(signal.SIGSTOP)
                try:
                    time.sleep(0.1)
                    b_db, b_wal = db.read_bytes(), wal.read_bytes()
                    h = _start_holder(root)
                    time.sleep(0.2)
                    h.stdin.close()
                    _wait4(h)
                    p["holder_db_wal_bytes_changed"] = (_changed_bytes(b_db, db.read_bytes())
                                                        + _changed_bytes(b_wal, wal.read_bytes()))
                finally:
                    writer.send_signal(signal.SIGCONT)
                # 2. a real pass with the writer live: hold, rsync raw pair, release
                t0 = time.monotonic()
                h = _start_holder(root)
                r = subprocess.Popen(["rsync", "--no-whole-file", *livedb.RAW_RSYNC_ARGS,
                                      str(root) + "/", str(raw) + "/"])
                r_cpu, _ = _wait4(r)
                p["holder_write_bytes_proc_io"] = _proc_io(h.pid)
                h.stdin.close()
                p["holder_cpu_s"], p["holder_write_bytes_rusage"] = _wait4(h)
                p["held_s"] = time.monotonic() - t0
                p["rsync_pair_cpu_s_both_ends"] = r_cpu
                # 3. node-side recovery
                t0 = time.monotonic()
                v = livedb.recover_database(raw / rel, Path(str(raw / rel) + "-wal"), node / rel, check_timeout=300.0)
                p["node_recover_s"] = time.monotonic() - t0
                p["recovered_ok"], p["rows"] = v.ok, v.rows
                livedb.forget_mtimes([raw / rel, Path(str(raw / rel) + "-wal")])
                # 4. the alternative: a snapshot made on the device (VACUUM INTO ~ sqlite3 .backup)
                snap = work / ("snap%d.db" % i)
                s = subprocess.Popen([PY, "-c", "import sqlite3,sys; c=sqlite3.connect(sys.argv[1], timeout=30);"
                                      " c.execute('VACUUM INTO ?', (sys.argv[2],)); c.close()", str(db), str(snap)])
                p["vacuum_into_cpu_s"], p["vacuum_into_write_bytes"] = _wait4(s)
                p["snapshot_bytes"] = snap.stat().st_size
                snap.unlink()
                # 5. plain rsync of the .db alone (what the upstream tool does), fresh target each time
                plain = work / "plain"
                shutil.rmtree(str(plain), ignore_errors=True)
                r = subprocess.Popen(["rsync", "--whole-file", str(db), str(plain) + "/"],
                                     stdout=subprocess.DEVNULL)
                p["plain_rsync_cpu_s_both_ends"], _ = _wait4(r)
                out["passes"].append(p)
        finally:
            writer.send_signal(signal.SIGCONT)
            writer.terminate()
            writer.wait(10)
        keys = [k for k in out["passes"][0] if isinstance(out["passes"][0][k], (int, float))
                and not isinstance(out["passes"][0][k], bool)]
        out["mean"] = {k: sum(p[k] for p in out["passes"]) / len(out["passes"]) for k in keys}
        out["all_recovered_ok"] = all(p["recovered_ok"] for p in out["passes"])
        return out
    finally:
        shutil.rmtree(str(work), ignore_errors=True)


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    result = run(quick="--quick" in argv)
    print(json.dumps(result, indent=1, sort_keys=True, default=str))
    return 0 if result["all_recovered_ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
