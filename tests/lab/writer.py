"""A live writer process: keeps appending tracking rows to a results database like a tracking ethoscope.

``/usr/bin/python3 -m tests.lab.writer --db PATH --counter FILE [--interval S] [--rows-per-commit N]``

WAL mode, busy_timeout=30000, synchronous=NORMAL, default wal_autocheckpoint. After each commit the
total number of rows committed by this process is written atomically (temp + rename) to --counter.
SIGTERM/SIGINT stop it after the current commit.
"""
import argparse
import os
import random
import signal
import sqlite3
import sys
import time


def write_counter(path, n):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write("%d\n" % n)
    os.rename(tmp, path)


def roi_tables(con):
    rows = con.execute("SELECT name FROM sqlite_master WHERE type='table' AND name LIKE 'ROI\\_%' ESCAPE '\\'"
                       " AND name != 'ROI_MAP'").fetchall()
    names = sorted((r[0] for r in rows), key=lambda n: int(n.split("_")[1]))
    return names


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--db", required=True)
    ap.add_argument("--counter", required=True)
    ap.add_argument("--interval", type=float, default=0.02)
    ap.add_argument("--rows-per-commit", type=int, default=10)
    args = ap.parse_args(argv)

    stopping = {"flag": False}

    def on_signal(*_):
        stopping["flag"] = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    con = sqlite3.connect(args.db, isolation_level=None, timeout=30)
    con.execute("PRAGMA busy_timeout=30000")
    con.execute("PRAGMA journal_mode=WAL")
    con.execute("PRAGMA synchronous=NORMAL")
    tables = roi_tables(con)
    if not tables:
        con.execute("CREATE TABLE ROI_1 (id INTEGER PRIMARY KEY AUTOINCREMENT, t INTEGER, x SMALLINT, y SMALLINT,"
                    " w SMALLINT, h SMALLINT, phi SMALLINT, is_inferred BOOLEAN, has_interacted BOOLEAN,"
                    " xy_dist_log10x1000 SMALLINT)")
        tables = ["ROI_1"]
    t0 = con.execute("SELECT max(t) FROM %s" % tables[0]).fetchone()[0] or 0
    rnd = random.Random(os.getpid())
    committed = 0
    write_counter(args.counter, committed)
    k = 0
    while not stopping["flag"]:
        con.execute("BEGIN IMMEDIATE")
        for _ in range(args.rows_per_commit):
            table = tables[k % len(tables)]
            t = t0 + 40 * (k // len(tables) + 1)
            con.execute("INSERT INTO %s (t, x, y, w, h, phi, is_inferred, has_interacted, xy_dist_log10x1000)"
                        " VALUES (?,?,?,?,?,?,?,?,?)" % table,
                        (t, rnd.randint(0, 600), rnd.randint(0, 80), rnd.randint(8, 30), rnd.randint(4, 15),
                         rnd.randint(0, 179), 0, 0, rnd.randint(0, 4000)))
            k += 1
        con.execute("COMMIT")
        committed += args.rows_per_commit
        write_counter(args.counter, committed)
        if args.interval > 0:
            time.sleep(args.interval)
    con.close()
    write_counter(args.counter, committed)
    return 0


if __name__ == "__main__":
    sys.exit(main())
