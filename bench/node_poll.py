"""What one poll of the upstream node's reader costs: 40 devices, each with 2,000 video chunks and 50
databases on the node (issue 21, item 3).

The node's reader (``ethoscope_node`` backup helpers) fetches the whole ``/status`` with a 5-second
timeout for every device page it shows, and parses it. Three status services answer it, each in its
own process, from the same ``status.json`` and ``history.json`` (written by the real store):

* ours: every database named, no video (the node lists the chunks of its own disk);
* every file: the same service naming every file of every device (what /status must carry if the
  node were to see every chunk from it);
* before: the code before issue 21 (``BASELINE``, extracted with ``git archive``): the newest 500
  files of each tree, which hide the rest of a week of chunks from the node.

Each poll is timed as the node makes it: ``urllib`` GET with a 5 s timeout, read, ``json.loads``;
"warm" polls find the service's prepared answer, "changed" polls follow a rewrite of the status
file (a pass ending), so the answer is rendered again. The services are polled in turn, ``ROUNDS``
rounds; the median and range of each are printed.

Run: ``/usr/bin/python3 -m bench.node_poll [--quick]``.
"""
from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PYTHON = "/usr/bin/python3"
BASELINE = "e7af4d5"          # before issue 21: /status listed each tree's newest 500 files
DEVICES, CHUNKS, DATABASES = 40, 2000, 50
ROUNDS = 15

# "every file": our service with each tree of each device fully listed in /status.
_EVERY_FILE = r"""
import sys
from ethoscope_rsync.state import history
from ethoscope_rsync.render import upstream
history.Inventory.newest = lambda self, count=0: dict(self.present)
history.listed = dict          # (the files are written whole; our service names only its summary's)
entry = upstream._device_entry
upstream._device_entry = lambda d, v, now, full=False: entry(d, v, now, full=True)
from ethoscope_rsync.commands.cli import main
sys.argv[0] = "ethoscope-backup"
sys.exit(main())
"""


def _documents(tmp: str) -> tuple:
    """status.json and history.json of 40 devices, each holding CHUNKS chunks and DATABASES databases."""
    sys.path.insert(0, ROOT)
    from tests.fixtures.status import NOW, long_history
    status, history = long_history(DEVICES, passes=3)
    for key, device in history["devices"].items():
        name = device["name"]
        dbs = {f"{key}/{name}/2025-{1 + n // 28:02d}-{1 + n % 28:02d}_10-00-00/"
               f"2025-{1 + n // 28:02d}-{1 + n % 28:02d}_10-00-00_{key}.db": 50 << 20 for n in range(DATABASES)}
        chunks = {f"{key}/{name}/2025-03-01_10-00-00/2025-03-01_10-00-00_{key}__1280x960@25_{n:05d}.h264":
                  12 << 20 for n in range(CHUNKS)}
        device["inventory"]["results"]["present"] = dbs
        device["inventory"]["videos"]["present"] = chunks
    paths = []
    for name, doc in (("status.json", status), ("history.json", history)):
        paths.append(os.path.join(tmp, "state" if name == "history.json" else "run", name))
        os.makedirs(os.path.dirname(paths[-1]), exist_ok=True)
        with open(paths[-1], "w") as handle:
            json.dump(doc, handle, separators=(",", ":"))
    return tuple(paths), NOW


def _baseline_tree(tmp: str) -> str | None:
    try:
        archive = subprocess.run(["git", "-C", ROOT, "archive", BASELINE, "ethoscope_rsync"],
                                 capture_output=True, check=True, timeout=60).stdout
        subprocess.run(["tar", "-x", "-C", tmp], input=archive, check=True, timeout=60)
    except (OSError, subprocess.CalledProcessError, subprocess.TimeoutExpired):
        return None
    return tmp


def _free_port() -> int:
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _serve(code_root: str, conf: str, argv_head: list) -> tuple:
    port = _free_port()
    env = dict(os.environ, PYTHONPATH=code_root, PYTHONDONTWRITEBYTECODE="1")
    for key in ("LISTEN_PID", "LISTEN_FDS", "NOTIFY_SOCKET"):
        env.pop(key, None)
    proc = subprocess.Popen(argv_head + ["serve", "-c", conf, "--listen", f"127.0.0.1:{port}"], env=env,
                            cwd=tempfile.gettempdir(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            _poll(port)
            return proc, port
        except OSError:
            time.sleep(0.2)
    proc.kill()
    raise RuntimeError("a status service did not answer")


def _poll(port: int) -> tuple:
    """One poll as the node's reader makes it -> (bytes, seconds, chunks it can read by name)."""
    started = time.perf_counter()
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/status", timeout=5) as answer:
        body = answer.read()
    doc = json.loads(body.decode())
    elapsed = time.perf_counter() - started
    named = sum(1 for d in doc["devices"].values() for n in d["synced"]["videos"]["detailed_files"]
                if n.endswith(".h264"))
    return len(body), elapsed, named


def _touch(paths) -> None:
    for path in paths:
        os.utime(path)


def run(quick: bool = False) -> dict:
    sys.path.insert(0, ROOT)
    from bench.transfer import row
    rounds = 4 if quick else ROUNDS
    out = {"devices": DEVICES, "chunks": CHUNKS, "databases": DATABASES, "baseline": BASELINE, "rows": []}
    with tempfile.TemporaryDirectory(prefix="bench-node-poll-") as tmp:
        (status_file, history_file), _ = _documents(tmp)
        conf = os.path.join(tmp, "backup.conf")
        with open(conf, "w") as handle:
            handle.write(f"[paths]\nstatus_file = {status_file}\nstate_dir = {os.path.dirname(history_file)}\n"
                         f"upstream_config = {tmp}/none\n[status]\nidle_exit = 0\n")
        os.makedirs(os.path.join(tmp, "old"))
        old = _baseline_tree(os.path.join(tmp, "old"))
        variants = {"ours": (ROOT, [PYTHON, "-m", "ethoscope_rsync"]),
                    "every file": (ROOT, [PYTHON, "-c", _EVERY_FILE])}
        if old:
            variants["before"] = (old, [PYTHON, "-m", "ethoscope_rsync"])
        served = {name: _serve(root, conf, head) for name, (root, head) in variants.items()}
        try:
            figures = {name: {"warm": [], "changed": [], "bytes": 0, "named": 0} for name in served}
            for _ in range(rounds):
                for name, (_, port) in served.items():          # in turn: the same load for each
                    _touch((status_file, history_file))
                    size, changed, named = _poll(port)
                    _, warm, _ = _poll(port)
                    f = figures[name]
                    f["changed"].append(changed)
                    f["warm"].append(warm)
                    f["bytes"], f["named"] = size, named
        finally:
            for proc, _ in served.values():
                proc.terminate()
                proc.wait(10)
    for name, f in figures.items():
        f["summary"] = {kind: {"median_ms": round(statistics.median(f[kind]) * 1e3, 1),
                               "min_ms": round(min(f[kind]) * 1e3, 1), "max_ms": round(max(f[kind]) * 1e3, 1)}
                        for kind in ("warm", "changed")}
    out["figures"] = {name: {"bytes": f["bytes"], "chunks_named": f["named"], **f["summary"]}
                      for name, f in figures.items()}
    ours, every = figures["ours"], figures["every file"]
    load = os.getloadavg()[0]
    for kind in ("changed", "warm"):
        o, e = ours["summary"][kind], every["summary"][kind]
        out["rows"].append(row("8 node poll", f"/status poll ms ({kind}), 40 dev x 2000 chunks, vs every file",
                               o["median_ms"], e["median_ms"], unit="ms",
                               note=f"ours {o['min_ms']}-{o['max_ms']}, every file {e['min_ms']}-{e['max_ms']}, "
                                    f"load {load:.1f}"))
    out["rows"].append(row("8 node poll", "/status bytes, 40 dev x 2000 chunks, vs every file", ours["bytes"],
                           every["bytes"], unit="B"))
    if "before" in figures:
        b = figures["before"]
        out["rows"].append(row("8 node poll", "/status bytes vs before issue 21 (newest 500 per tree)",
                               ours["bytes"], b["bytes"], unit="B",
                               note=f"before: {b['named']} of {DEVICES * CHUNKS} chunks named; "
                                    f"poll {b['summary']['changed']['median_ms']} ms changed, "
                                    f"{b['summary']['warm']['median_ms']} ms warm"))
    return out


if __name__ == "__main__":
    result = run("--quick" in sys.argv)
    for name, f in result["figures"].items():
        print(f"{name:<11} {f['bytes']:>11} B  chunks named {f['chunks_named']:>6}  "
              f"changed {f['changed']['median_ms']:>7} ms ({f['changed']['min_ms']}-{f['changed']['max_ms']})  "
              f"warm {f['warm']['median_ms']:>7} ms ({f['warm']['min_ms']}-{f['warm']['max_ms']})")
    for r in result["rows"]:
        print(f"{r['measure']:<62} ours {r['ours']:>10} baseline {r['baseline']:>10} ratio {r['ratio']}")
