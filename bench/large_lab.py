"""A large lab (issue 24, scenario 10): 100 devices x 10,000 files on the node, against the code
before the inventory left ``history.json`` (``BASELINE``, extracted with ``git archive``).

REAL devices are simulated ethoscopes on the lab (network namespaces, sshd), each holding FILES
files (a few databases, the rest small video chunks); the other devices' records are generated
through each variant's own store (its ``StatusStore`` fed the events their passes would send),
so each variant's files are what its own pass writes. Then, alternating the variants round by round:

* a no-change pass of the real CLI (the REAL devices; every record loaded and written): wall
  time, CPU (the runner and its ssh/rsync children, wait4) and the runner's peak RSS (VmHWM);
* ``ethoscope-backup status`` (wall time) and ``verify --since`` a microsecond (its planning:
  the history read, each device's tree walked, no file checked);
* the status service: the cold first answer of a socket-activated ``serve`` (from connecting to
  the whole first ``/status``), then a started one: one ``/status`` poll (bytes, gzipped bytes,
  time) and one ``/status/<device>``, and its peak RSS;
* the history and inventory sizes on disk.

Run: ``/usr/bin/python3 -m bench.large_lab [--quick | --small]`` (or ``-m bench --only large``), as
root (the lab); ``--small``: 3 real devices of 2,000 files and nothing generated, where nothing may be
slower than before.
"""
from __future__ import annotations

import gzip
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.transfer import PYTHON, ROOT, Lab, Work, _vm_hwm_kb, chown_tree, lab_name, row, runner_env

BASELINE = "eb4fbeb"        # the last commit before the inventory database
GOALS = {"pass_rss_mb": 150, "service_rss_mb": 64, "cold_ms": 300, "status_gz_bytes": 1 << 20, "status_cmd_s": 1.0}

# One generated device's records, through the variant's own store (its code on PYTHONPATH).
_GENERATE = r"""
import inspect, sys, time
from pathlib import Path
from ethoscope_rsync.state import events as ev
from ethoscope_rsync.state.store import StatusStore, load_history, save_history
state, devices, files, databases = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
history = load_history(state / "history.json")
extra = {}
if "inventories" in inspect.signature(StatusStore).parameters:
    from ethoscope_rsync.state.inventory import Inventories
    extra["inventories"] = Inventories(state / "inventory.sqlite")
store = StatusStore(state / "generated-status.json", history, pid=1, what="unified", interval=1.0, **extra)
now = time.time()
for i in range(devices):
    mid, name = "%032x" % (0xfeed << 100 | i), "ETHOSCOPE_%03d" % (500 + i)
    store.add_device(mid, name, "169.254.250.%d" % (1 + i % 250))
    store.apply(ev.Started(mid, 1, now))
    store.apply(ev.Contacted(mid, mid, True))
    results, videos = {}, {}
    for n in range(files):
        day = "2026-%02d-%02d_10-00-00" % (1 + n // 900 % 12, 1 + n // 30 % 28)
        if n < databases:
            results["%s/%s/%s/%s_%s.db" % (mid, name, day, day, mid)] = 50 << 20
        else:
            videos["%s/%s/%s/%s_%s_1280x960@25_%05d.h264" % (mid, name, day, day, mid, n)] = 12 << 20
    store.apply(ev.Listed(mid, "results", tuple(results.items())))
    store.apply(ev.Listed(mid, "videos", tuple(videos.items())))
    store.apply(ev.Finished(mid, True, "Backup completed successfully", now))
save_history(state / "history.json", store.history)
"""


def _tree(root: Path, rev: str) -> Path | None:
    try:
        archive = subprocess.run(["git", "-C", str(ROOT), "archive", rev, "ethoscope_rsync"], capture_output=True,
                                 check=True, timeout=60).stdout
        root.mkdir(parents=True)
        subprocess.run(["tar", "-x", "-C", str(root)], input=archive, check=True, timeout=60)
    except (OSError, subprocess.CalledProcessError, subprocess.TimeoutExpired):
        return None
    return root


def _env(code: Path) -> dict:
    env = runner_env()
    env["PYTHONPATH"] = str(code)
    env["PYTHONPYCACHEPREFIX"] = env["PYTHONPYCACHEPREFIX"] + "-" + code.name
    for key in ("LISTEN_PID", "LISTEN_FDS", "NOTIFY_SOCKET"):
        env.pop(key, None)
    return env


def _populate(lab, device, files: int, databases: int) -> None:
    """`databases` experiments (a small SQLite database each) and `files` in all, the rest chunks."""
    lab.populate(device, experiments=databases, db_rows=20, video_chunks=0, mp4=False)
    folders = sorted((device.data_root / "results" / device.id / device.name).iterdir())
    for n in range(files - databases):
        ts = folders[n % len(folders)].name
        folder = device.data_root / "videos" / device.id / device.name / ts
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"{ts}_{device.id}_1280x960@25_{n:05d}.h264").write_bytes(b"x" * 64)
    chown_tree(device.data_root)


def _cli(code: Path, conf: Path, *args, timeout=1800) -> dict:
    """The real CLI of one variant -> seconds, CPU seconds (with its children), peak RSS of the runner."""
    argv = [PYTHON, "-m", "ethoscope_rsync", *args, "-c", str(conf)]
    t0 = time.perf_counter()
    proc = subprocess.Popen(argv, cwd=tempfile.gettempdir(), env=_env(code), stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    hwm = 0
    while proc.poll() is None:          # VmHWM until it exits (read while it lives)
        hwm = max(hwm, _vm_hwm_kb(proc.pid))
        try:
            proc.wait(0.02)
        except subprocess.TimeoutExpired:
            pass
    seconds = time.perf_counter() - t0
    stderr = proc.stderr.read().decode(errors="replace")
    proc.stderr.close()
    if proc.returncode not in (0, 1) or "Traceback" in stderr:
        raise RuntimeError(f"{' '.join(args)} exited {proc.returncode}: {stderr[-800:]}")
    return {"seconds": seconds, "hwm_kb": hwm}


def _pass(code: Path, conf: Path) -> dict:
    """A pass, timed through wait4 for its CPU (the runner and every ssh/rsync it waited for)."""
    argv = [PYTHON, "-m", "ethoscope_rsync", "run", "-c", str(conf)]
    t0 = time.perf_counter()
    proc = subprocess.Popen(argv, cwd=tempfile.gettempdir(), env=_env(code), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    import threading
    hwm, done = [0], threading.Event()

    def poll():
        while not done.wait(0.02):
            hwm[0] = max(hwm[0], _vm_hwm_kb(proc.pid))
    watcher = threading.Thread(target=poll, daemon=True)
    watcher.start()
    try:
        _, status, usage = os.wait4(proc.pid, 0)
    finally:
        done.set()
    proc.returncode = os.waitstatus_to_exitcode(status)
    watcher.join(5)
    if proc.returncode != 0:
        raise RuntimeError(f"a no-change pass exited {proc.returncode}")
    return {"seconds": time.perf_counter() - t0, "cpu": usage.ru_utime + usage.ru_stime, "hwm_kb": hwm[0]}


def _service(code: Path, conf: Path, device_key: str) -> dict:
    from bench.status_load import free_port, get, stop, wait_listening
    env = _env(code)
    port = free_port()        # cold: a socket-activated start, from connecting to the whole first answer
    passed = ["-E", "PYTHONPATH=" + env["PYTHONPATH"], "-E", "PYTHONPYCACHEPREFIX=" + env["PYTHONPYCACHEPREFIX"]]
    proc = subprocess.Popen(["systemd-socket-activate", "-l", f"127.0.0.1:{port}", *passed, PYTHON, "-m",
                             "ethoscope_rsync", "serve", "-c", str(conf)], env=env, cwd=tempfile.gettempdir(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_listening(port)
        t0 = time.perf_counter()
        code_, _, body, _ = get(port, "/status", timeout=300)
        cold = (time.perf_counter() - t0) * 1e3
        if code_ != 200:
            raise RuntimeError(f"the cold /status answered {code_}")
    finally:
        stop(proc)
    port = free_port()
    proc = subprocess.Popen([PYTHON, "-m", "ethoscope_rsync", "serve", "-c", str(conf), "--listen",
                             f"127.0.0.1:{port}"], env=env, cwd=tempfile.gettempdir(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_listening(port)
        out = {"cold_ms": cold}
        for name, path in (("status", "/status"), ("device", f"/status/{device_key}")):
            t0 = time.perf_counter()
            code_, _, body, _ = get(port, path, timeout=60)
            out[f"{name}_ms"] = (time.perf_counter() - t0) * 1e3
            if code_ != 200:
                raise RuntimeError(f"{path} answered {code_}")
            out[f"{name}_bytes"], out[f"{name}_gz_bytes"] = len(body), len(gzip.compress(body, 6))
        out["rss_kb"] = _vm_hwm_kb(proc.pid)
    finally:
        stop(proc)
    return out


def _disk(state: Path) -> dict:
    def size(name):
        return sum(p.stat().st_size for p in state.glob(name + "*") if p.is_file())
    return {"history_bytes": size("history.json"), "inventory_bytes": size("inventory.sqlite")}


SIZES = {"quick": (2, 8, 2000, 5, 1), "full": (4, 96, 10000, 50, 3),
         "small": (3, 0, 2000, 20, 5)}       # a small lab: at 3 devices nothing may be slower than before


def run(quick: bool = False, size: str = "") -> dict:
    real, generated, files, databases, rounds = SIZES[size or ("quick" if quick else "full")]
    out = {"devices": real + generated, "real_devices": real, "files_per_device": files, "baseline": BASELINE,
           "rounds": rounds}
    with Work("large") as work, Lab(lab_name("large"), real) as lab:
        for device in lab.devices:
            _populate(lab, device, files, databases)
        codes = {"ours": ROOT, "before": _tree(work / "before" / "code", BASELINE)}
        if codes["before"] is None:
            del codes["before"]
        for code in codes.values():           # byte-compiled, as the package installs it
            subprocess.run([PYTHON, "-m", "compileall", "-q", str(code / "ethoscope_rsync")], env=_env(code),
                           check=True, timeout=300, stdout=subprocess.DEVNULL)
        nodes = {}
        for name, code in codes.items():      # each variant's node: a first pass, then the others' records
            base = work / name
            base.mkdir(exist_ok=True)
            conf = base / "backup.conf"
            conf.write_text(lab.config_text(base / "results", base / "videos", base / "run" / "status.json",
                                            base / "state", base / "state" / "known_hosts")
                            + "[transfer]\nmin_free = 0\n")
            _pass(code, conf)
            if generated:
                subprocess.run([PYTHON, "-c", _GENERATE, str(base / "state"), str(generated), str(files),
                                str(databases)], env=_env(code), cwd=tempfile.gettempdir(), check=True, timeout=3600)
            nodes[name] = conf
        figures = {name: {} for name in codes}
        key = lab.devices[0].id
        for r in range(rounds):
            for name in (list(codes) if r % 2 == 0 else list(codes)[::-1]):
                f, code, conf = figures[name], codes[name], nodes[name]
                measured = {**{f"pass_{k}": v for k, v in _pass(code, conf).items()},
                            "status_cmd_s": _cli(code, conf, "status")["seconds"],
                            "verify_plan_s": _cli(code, conf, "verify", "--since", "0.00000001")["seconds"],
                            **_service(code, conf, key)}
                for k, v in measured.items():
                    f.setdefault(k, []).append(v)
        for name in codes:
            figures[name]["disk"] = _disk(nodes[name].parent / "state")
    out["figures"] = figures
    out["rows"] = _rows(figures, out)
    return out


def _spread(values) -> str:
    return f"{min(values):.3g}-{max(values):.3g}"


def _rows(figures: dict, out: dict) -> list:
    ours, before = figures["ours"], figures.get("before", {})
    label = f"10 large lab, {out['devices']} dev x {out['files_per_device']} files"
    rows = []

    def add(measure, key, unit, scale=1.0, goal=None):
        o = statistics.median(ours[key]) * scale
        b = statistics.median(before[key]) * scale if key in before else None
        note = f"ours {_spread([v * scale for v in ours[key]])}" + (
            f", before {_spread([v * scale for v in before[key]])}" if b is not None else "")
        rows.append(row(label, measure, round(o, 3), None if b is None else round(b, 3), unit=unit, note=note,
                        ok=None if goal is None else o <= goal))
    add("no-change pass wall time vs before", "pass_seconds", "s")
    add("no-change pass CPU (runner + ssh/rsync) vs before", "pass_cpu", "s")
    add("pass peak RSS (MB) vs before", "pass_hwm_kb", "MB", 1 / 1024, GOALS["pass_rss_mb"])
    add("status service peak RSS (MB) vs before", "rss_kb", "MB", 1 / 1024, GOALS["service_rss_mb"])
    add("cold first /status, socket-activated (ms) vs before", "cold_ms", "ms", goal=GOALS["cold_ms"])
    add("/status poll time (ms) vs before", "status_ms", "ms")
    add("/status bytes vs before", "status_bytes", "B")
    add("/status gzipped bytes vs before", "status_gz_bytes", "B", goal=GOALS["status_gz_bytes"])
    add("/status/<device> time (ms) vs before", "device_ms", "ms")
    add("/status/<device> bytes vs before", "device_bytes", "B")
    add("ethoscope-backup status (s) vs before", "status_cmd_s", "s", goal=GOALS["status_cmd_s"])
    add("verify planning (s) vs before", "verify_plan_s", "s")
    for what in ("history_bytes", "inventory_bytes"):
        rows.append(row(label, f"{what.replace('_', ' ')} on disk vs before", ours["disk"][what],
                        before.get("disk", {}).get(what), unit="B"))
    return rows


if __name__ == "__main__":
    result = run("--quick" in sys.argv, "small" if "--small" in sys.argv else "")
    for r in result["rows"]:
        print(f"{r['measure']:<56} ours {r['ours']!s:>12} before {r['baseline']!s:>12} ratio {r['ratio']!s:>6}  "
              f"{r.get('note', '')}")
