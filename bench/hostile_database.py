"""What a crafted database costs a pass, with and without the node's SQLite hardening.

``/usr/bin/python3 -m bench.hostile_database [--rows N] [--timeout S]`` (root: it brings up a lab)

A lab of two devices; device 1 holds two crafted databases (tests/lab/crafted.py): its results
database made expensive to check (a virtual generated column costing ~35 ms per row, `--rows`
rows) and a new one costing 1.2 GB per row (a CHECK constraint, 2 rows). Each scenario backs up
the lab once from a fresh destination with the real command line and reports the pass's CPU time
(the pass and its children: ssh, rsync) and the peak RSS of its largest process:

* honest: before the databases are crafted;
* hardened: as shipped (``[transfer] database_check_timeout`` = `--timeout`);
* without the fix: the same pass with every device database opened by plain ``sqlite3.connect``
  (SQLite's defaults: trusted schema, no limits, no deadline), as before issue 12.

Without the fix the cost grows with `--rows` without bound (100,000 rows, a 2.6 MB file: about an
hour); hardened it stays at the deadline whatever the file holds.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from tests.lab.cost import measured  # noqa: E402
PYTHON = "/usr/bin/python3"

UNHARDENED = ("import sqlite3, sys\n"
              "from ethoscope_rsync.system import untrusted_sqlite\n"
              "untrusted_sqlite.connect = lambda target, budget, uri=False: sqlite3.connect(\n"
              "    target, uri=uri, isolation_level=None)\n"
              "from ethoscope_rsync.commands.cli import main\n"
              "sys.exit(main(sys.argv[1:]))\n")


def run(rows: int = 1000, timeout: float = 10.0) -> dict:
    sys.path.insert(0, str(ROOT))
    from tests.lab import Lab
    from tests.lab.crafted import craft

    lab = Lab(name="bench-hostile-db", n_devices=2)
    base = Path(tempfile.mkdtemp(prefix="hostile-db-"))
    env = {k: v for k, v in os.environ.items() if k not in ("LISTEN_PID", "LISTEN_FDS", "NOTIFY_SOCKET")}
    figures = {"rows": rows, "database_check_timeout": timeout}
    try:
        lab.up()
        for device in lab.devices:
            lab.populate(device, experiments=1, db_rows=200, video_chunks=1, chunk_bytes=64 << 10, mp4=False)

        def scenario(name, program):
            dest = base / name
            conf = dest / "backup.conf"
            dest.mkdir()
            conf.write_text(lab.config_text(dest / "results", dest / "videos", dest / "status.json", dest / "state",
                                            dest / "known_hosts")
                            + f"[transfer]\nmin_free = 0\nretries = 0\ndatabase_check_timeout = {timeout}\n")
            result, cpu, rss = measured([PYTHON, *program, "run", "-c", str(conf)], env=env)
            verdicts = json.loads((dest / "status.json").read_text())["devices"][lab.devices[0].id]["databases"]
            figures[name] = {"exit": result.returncode, "cpu_s": round(cpu, 2), "peak_rss_mb": round(rss),
                             "verdicts": sorted(v[0] for v in verdicts.values())}
            print(f"{name:>16}: exit {result.returncode}, CPU {cpu:7.2f} s, peak RSS {rss:6.0f} MB, "
                  f"device 1's databases: {', '.join(figures[name]['verdicts'])}", flush=True)

        scenario("honest", ["-m", "ethoscope_rsync"])
        device = lab.devices[0]
        own = lab.newest_db(device)
        craft(own, device, own.parent.name, "cpu", "generated", rows=rows)
        bomb = own.parents[1] / "2024-03-02_09-00-00" / f"2024-03-02_09-00-00_{device.id}.db"
        bomb.parent.mkdir()
        craft(bomb, device, bomb.parent.name, "memory", "check", rows=2)
        lab._chown_tree(device.data_root, own.parents[1])
        scenario("hardened", ["-m", "ethoscope_rsync"])
        scenario("without the fix", ["-c", UNHARDENED])
    finally:
        lab.down()
        shutil.rmtree(base, ignore_errors=True)
    return figures


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python3 -m bench.hostile_database", description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=1000, help="rows of the CPU-expensive database")
    parser.add_argument("--timeout", type=float, default=10.0, help="[transfer] database_check_timeout")
    args = parser.parse_args(argv)
    print(json.dumps(run(args.rows, args.timeout), indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
