"""A new device's first full copy (issue 26, scenario 10): where the product's wall time goes, and
whether anything in it grows with the data. One device, 1.2 GB of video and a small results tree;
every variant alternates with the others in one run (paired repetitions, medians and ranges):

- ``ethoscope-backup run`` (the real command line, a fresh node: a device's first contact) against
  bare ``rsync -rt`` with the cipher the product chooses, and the legacy ``rsync -avz``;
- the product's own videos rsync argv alone (stdout to /dev/null) and through ``execute.stream`` +
  ``OutputReader`` (events drained by a second thread, as the pass's writer does);
- the profile: the real pass (``run_pass``) in a child process whose process runner, discovery and
  status/history writes are wrapped with clocks: wall time split into discovery, the probe, the
  results stage, the videos stage, the status writes, and what comes before and after the videos.
- ``without_aes``: the device's CPU says it has no AES instructions (the lab's emulation): chacha20.

Diagnostics by hand: ``BENCH_VARIANT`` (see _variant) takes one suspect away from the profiled pass;
``cpu`` in it adds each process's CPU seconds (the probe, each rsync with its ssh, the shared connection).
Run: ``/usr/bin/python3 -m bench --only first,first-noaes`` (or ``--quick``).
"""
from __future__ import annotations

import json
import os
import queue
import resource
import shlex
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.transfer import (LEGACY_FLAGS, PYTHON, Work, fresh_node, lab_name, med, remote, row, run_cli,  # noqa: E402
                            runner_env, ssh_opts)
from tests.lab.lab import Lab  # noqa: E402

SCENARIO = "10 first copy"


def _kind(argv) -> str:
    """Which part of a device's job a process is."""
    argv = tuple(argv)
    if argv[0] == "rsync":
        if "--exclude=*" in argv:
            return "results: raw database copy"
        if "--exclude=*.db" in argv:
            return "results: tree"
        return "videos" if "/videos/" in argv[-2] else "results: tree"
    if "-O" in argv:
        return "close the shared connection"
    if "-N" in argv:
        return "shared connection (first contact)"
    if any("ethoscope-backup-probe" in part for part in argv):
        return "probe"
    return "database holder"


def child(conf: str) -> None:
    """One instrumented pass (run in a child process): prints {part: [[start, end], ...]} as JSON."""
    from ethoscope_rsync.backup import passes
    from ethoscope_rsync.config.load import load_config
    from ethoscope_rsync.state import store
    from ethoscope_rsync.system import execute
    spans, lock = {}, threading.Lock()
    clock = time.perf_counter

    def span(name, start):
        with lock:
            spans.setdefault(name, []).append([start, clock()])

    def wrap(function, name_of):
        def wrapped(*args, **kwargs):
            start = clock()
            try:
                return function(*args, **kwargs)
            finally:
                span(name_of(args), start)
        return wrapped

    execute.stream = wrap(execute.stream, lambda a: _kind(a[0]))       # (execute.run is a stream)
    original_held = execute.held

    def held(argv, **kwargs):
        start = clock()
        manager = original_held(argv, **kwargs)

        class Timed:
            def __enter__(self):
                return manager.__enter__()

            def __exit__(self, *exc):
                try:
                    return manager.__exit__(*exc)
                finally:
                    span("database holder", start)
        return Timed()
    execute.held = held
    passes.discover = wrap(passes.discover, lambda a: "discovery")
    store.StatusStore.write = wrap(store.StatusStore.write, lambda a: "status writes")
    passes.save_history = wrap(passes.save_history, lambda a: "history write")
    _variant(os.environ.get("BENCH_VARIANT", ""))
    kinds, cpu_by_kind = {}, {}
    per_process = "cpu" in os.environ.get("BENCH_VARIANT", "")
    original_spawn = execute._spawn

    def spawn(argv, *args, **kwargs):
        process = original_spawn(argv, *args, **kwargs)
        kinds[process.pid] = _kind(argv)
        return process

    def waitpid(pid, options):         # each process's own CPU, and its children's, as it is reaped
        got, status, usage = os.wait4(pid, options)
        if got:
            name = kinds.get(got, "other (the shared connection)")
            with lock:
                cpu_by_kind[name] = round(cpu_by_kind.get(name, 0.0) + usage.ru_utime + usage.ru_stime, 3)
        return got, status
    if per_process:      # (the shared connection's ssh, which ControlPersist detaches, is reaped here)
        execute._spawn, os.waitpid = spawn, waitpid
        _adopt_orphans()
    config = load_config(Path(conf))
    start = clock()
    code = passes.run_pass(config)
    span("pass", start)
    _reap(time.monotonic() + 10)
    print(json.dumps({"code": code, "start": start, "spans": spans, "cpu_s": _cpu_seconds(resource.RUSAGE_SELF) +
                      _cpu_seconds(resource.RUSAGE_CHILDREN), "cpu_self_s": _cpu_seconds(resource.RUSAGE_SELF),
                      "cpu_by_kind": cpu_by_kind}))


def _adopt_orphans() -> None:
    """Make this process the subreaper of its descendants, so that the shared ssh connection (which
    ssh's ControlPersist detaches) is reaped here and its CPU counted with the pass's."""
    import ctypes
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(36, 1, 0, 0, 0) != 0:      # PR_SET_CHILD_SUBREAPER
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_CHILD_SUBREAPER)")


def _reap(deadline: float) -> None:
    while time.monotonic() < deadline:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)     # (wrapped: counted)
        except ChildProcessError:
            return
        if not pid:
            time.sleep(0.02)


def _cpu_seconds(who) -> float:
    usage = resource.getrusage(who)
    return usage.ru_utime + usage.ru_stime


def _variant(name: str) -> None:
    """Diagnostics: the pass with one suspect of overhead taken away (BENCH_VARIANT)."""
    from ethoscope_rsync.backup import job, passes
    from ethoscope_rsync.state import store
    if "nofsync" in name:
        store.os = type("NoSync", (), {**{k: getattr(os, k) for k in dir(os) if not k.startswith("__")},
                                       "fsync": staticmethod(lambda fd: None)})
    if "noshare" in name:
        passes.control_directory = lambda candidates: ""
    if "sharevideos" in name:          # as before issue 26: the videos multiplexed over the shared connection
        job._shared_by = lambda job_, kind: job_.control_dir
    if "strace" in name:
        from ethoscope_rsync.system import execute
        spawn, strace = execute._spawn, ("strace", "-f", "-c", "-o", os.environ.get("BENCH_STRACE", "/dev/stderr"))
        execute._spawn = lambda argv, *a, **k: spawn(
            strace + tuple(argv) if _kind(argv) == "videos" else argv, *a, **k)
    if "noreader" in name:
        class Quiet(job.OutputReader):
            def __call__(self, record):
                if not record.startswith(" "):
                    super().__call__(record)
        job.OutputReader = Quiet


def _split(result) -> dict:
    """Seconds per part of one instrumented pass; parts that overlap the videos are counted apart."""
    spans, start = result["spans"], result["start"]
    total = spans["pass"][0][1] - start
    seconds = {name: round(sum(b - a for a, b in pairs), 3) for name, pairs in spans.items() if name != "pass"}
    results = [pair for name, pairs in spans.items() if name.startswith(("results", "database")) for pair in pairs]
    if results:
        seconds["results stage (first start to last end, beside the videos)"] = round(
            max(b for _, b in results) - min(a for a, _ in results), 3)
    videos = spans.get("videos", [[start, start]])
    seconds["before the videos stage"] = round(videos[0][0] - start, 3)
    seconds["after the videos stage"] = round(spans["pass"][0][1] - videos[-1][1], 3)
    seconds["pass (wall)"] = round(total, 3)
    seconds["node CPU"] = round(result["cpu_s"], 3)
    seconds["node CPU: the pass's own process"] = round(result["cpu_self_s"], 3)
    for name, value in result.get("cpu_by_kind", {}).items():
        seconds[f"node CPU: {name}"] = value
    return seconds


def _profiled_pass(lab, base, total) -> dict:
    """One instrumented pass of a fresh node (a new device) in a child process -> seconds per part."""
    node = fresh_node(lab, base)
    os.sync()
    process = subprocess.run([PYTHON, "-m", "bench.first_copy", "--child", str(node.conf)], cwd=ROOT,
                             env=runner_env(), capture_output=True, text=True, timeout=3600)
    if process.returncode != 0:
        raise RuntimeError(f"the instrumented pass failed: {process.stderr[-800:]}")
    result = json.loads(process.stdout.strip().splitlines()[-1])
    got = sum(p.stat().st_size for p in node.videos.rglob("*.h264"))
    if result["code"] != 0 or got != total:
        raise RuntimeError(f"the instrumented pass exited {result['code']}, copied {got} of {total} bytes")
    shutil.rmtree(node.base, ignore_errors=True)
    return _split(result)


def _videos_argv(node, device, dest, cipher):
    from bench.transfer import ours_rsync_argv
    return ours_rsync_argv(node, device, "videos", dest, cipher)


def _through_reader(argv, device) -> float:
    """The videos rsync through the product's runner and reader, its events drained as the pass does."""
    from ethoscope_rsync.backup.reader import OutputReader
    from ethoscope_rsync.system import execute
    events, done = queue.Queue(), threading.Event()

    def drain():
        while not done.is_set() or not events.empty():
            try:
                events.get(timeout=0.5)
            except queue.Empty:
                pass
    drainer = threading.Thread(target=drain, daemon=True)
    drainer.start()
    start = time.perf_counter()
    result = execute.stream(tuple(argv), OutputReader(events, device.id, "videos", device.id), timeout=3600)
    elapsed = time.perf_counter() - start
    done.set()
    drainer.join(5)
    if result.returncode != 0:
        raise RuntimeError(f"the videos rsync exited {result.returncode}: {result.stderr[-400:]}")
    return elapsed


def _alone(argv, cpu=None) -> float:
    """Seconds of one rsync with its stdout to /dev/null; its CPU seconds (and its ssh's) appended to `cpu`."""
    start, before = time.perf_counter(), _cpu_seconds(resource.RUSAGE_CHILDREN)
    process = subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, timeout=3600)
    if process.returncode != 0:
        raise RuntimeError(f"the videos rsync exited {process.returncode}: {process.stderr[-400:]}")
    if cpu is not None:
        cpu.append(round(_cpu_seconds(resource.RUSAGE_CHILDREN) - before, 3))
    return time.perf_counter() - start


def _cli(lab, base, total, cpu, *args) -> float:
    """The real command line at a device's first contact (a fresh node), its node CPU appended to `cpu`
    (its own and its children's but the shared connection's ssh, which ControlPersist detaches)."""
    node = fresh_node(lab, base)
    os.sync()
    before = _cpu_seconds(resource.RUSAGE_CHILDREN)
    seconds = run_cli(node, "-j", "1", *args)["seconds"]
    cpu.append(round(_cpu_seconds(resource.RUSAGE_CHILDREN) - before, 3))
    got = sum(p.stat().st_size for p in node.videos.rglob("*.h264"))
    shutil.rmtree(node.base, ignore_errors=True)
    if got != total:
        raise RuntimeError(f"ethoscope-backup run copied {got} of {total} bytes")
    return seconds


def _spread(values) -> str:
    return f"{min(values):.3f}-{max(values):.3f}"


def _paired(ours, baseline) -> str:
    ratios = sorted(o / b for o, b in zip(ours, baseline))
    return f"paired ratios {ratios[0]:.3f}-{ratios[-1]:.3f}"


ALONE, READER, PROFILED = "videos rsync alone", "videos rsync through the reader", "the pass, instrumented"
CLI, BARE, LEGACY = "ethoscope-backup run", "bare rsync -rt", "legacy rsync -avz"
VIDEOS_ONLY = "ethoscope-backup run --videos-only"


def run(quick=False, without_aes=False, chunks=None, reps=None, only=None):
    """`chunks` of 200 MB (default 6: 1.2 GB), `reps` repetitions, `only` a subset of the variants
    (the ones the rows need are measured anyway: by hand, ``--chunks 60 --reps 2 --only run,bare``)."""
    chunks, size = (2, 16 << 20) if quick else (chunks or 6, 200 << 20)
    reps = reps or (2 if quick else 5)
    total = chunks * size
    cipher = "chacha20-poly1305@openssh.com" if without_aes else "aes128-gcm@openssh.com"
    out = {"bytes": total, "repetitions": reps, "without_aes": without_aes, "cipher": cipher}
    tag = "firstna" if without_aes else "first"
    with Work(tag) as work, Lab(lab_name(tag), 1, without_aes={1} if without_aes else ()) as lab:
        device = lab.devices[0]
        lab.populate(device, experiments=1, db_rows=2000, video_chunks=0, mp4=False)
        for _ in range(chunks):
            lab.add_video_chunk(device, size)
        dest, known = work / "dest", work / "known_hosts"
        known.write_text(lab.known_hosts_text())
        argv = _videos_argv(fresh_node(lab, work / "node"), device, dest, cipher)
        bare = ["rsync", "-rt", "-e", ssh_opts(lab, cipher, known), remote(device, "videos"), f"{dest}/"]
        legacy = ["rsync", *LEGACY_FLAGS, "-e", shlex.join(["ssh", "-i", str(lab.key_path), "-o",
                                                            "StrictHostKeyChecking=no", "-o",
                                                            "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR"]),
                  remote(device, "videos"), f"{dest}/"]
        profiles, times = [], {name: [] for name in (ALONE, READER, PROFILED, CLI, BARE, LEGACY, VIDEOS_ONLY)}
        cpu = {ALONE: [], CLI: [], BARE: [], VIDEOS_ONLY: []}

        def one(name):
            # every variant starts on the same disk: the previous one's copy removed and written back
            # (a product run after a bare one found 1.2 GB more on the disk and took twice the CPU)
            shutil.rmtree(dest, ignore_errors=True)
            dest.mkdir()
            os.sync()
            if name == PROFILED:
                profiles.append(_profiled_pass(lab, work / "node", total))
                times[name].append(profiles[-1]["pass (wall)"])
                return
            if name in (CLI, VIDEOS_ONLY):
                times[name].append(_cli(lab, work / "node", total, cpu[name], *name.split()[2:]))
                return
            if name == READER:
                times[name].append(_through_reader(argv, device))
            else:
                times[name].append(_alone({ALONE: argv, BARE: bare, LEGACY: legacy}[name], cpu.get(name)))
            got = sum(p.stat().st_size for p in dest.rglob("*.h264"))
            if got != total:
                raise RuntimeError(f"{name} copied {got} of {total} bytes")

        chosen = [name for name in times if only is None or name in only]
        for rep in range(reps):          # alternating, so that each repetition's figures are paired
            for name in (chosen if rep % 2 == 0 else chosen[::-1]):
                one(name)
        shutil.rmtree(dest, ignore_errors=True)
    parts = sorted({name for profile in profiles for name in profile})
    out["profile_s"] = {name: [p.get(name, 0.0) for p in profiles] for name in parts}
    out["profile_median_s"] = {name: med(values) for name, values in out["profile_s"].items()}
    out.update(times_s=times, median_s={name: med(values) for name, values in times.items() if values}, node_cpu_s=cpu)
    m = out["median_s"]
    if only is not None:
        return dict(out, rows=[row(SCENARIO, f"{name} ({total / 1e9:.1f} GB)", m[name], m[BARE],
                                   note=f"node CPU {_spread(cpu[name])} s" if name in cpu else "")
                               for name in chosen])
    label = f"{'no AES, ' if without_aes else ''}{total / 1e6:.0f} MB, {cipher.split('@')[0]}"
    stage = out["profile_s"]["videos"]
    out["rows"] = [
        row(SCENARIO, f"run (first contact) vs bare -rt, same cipher ({label})", m[CLI], m[BARE], 1.05,
            note=_paired(times[CLI], times[BARE])),
        row(SCENARIO, f"run (first contact) vs legacy rsync -avz ({label})", m[CLI], m[LEGACY], 0.70,
            note=_paired(times[CLI], times[LEGACY])),
        row(SCENARIO, f"run --videos-only vs run (unified) ({label})", m[VIDEOS_ONLY], m[CLI], 1.0,
            note=_paired(times[VIDEOS_ONLY], times[CLI]) + f"; node CPU {med(cpu[VIDEOS_ONLY])} / {med(cpu[CLI])} s"),
        row(SCENARIO, f"[diag] videos rsync through the reader vs alone ({label})", m[READER], m[ALONE],
            note=_paired(times[READER], times[ALONE])),
        row(SCENARIO, f"[diag] the pass's videos stage vs the same rsync alone ({label})", med(stage), m[ALONE],
            note=_paired(stage, times[ALONE]) + "; the pass instrumented"),
        row(SCENARIO, f"[diag] node CPU s: run vs bare -rt ({label})", med(cpu[CLI]), med(cpu[BARE]),
            note=f"run {_spread(cpu[CLI])}, bare {_spread(cpu[BARE])}; run's own python included"),
    ]
    for name, median in out["profile_median_s"].items():
        out["rows"].append(row(SCENARIO, f"[profile] {name} ({label})", median,
                               note=f"range {_spread(out['profile_s'][name])} s"))
    return out


if __name__ == "__main__":
    if sys.argv[1:2] == ["--child"]:
        child(sys.argv[2])
    else:
        def option(name, default=None):
            return sys.argv[sys.argv.index(name) + 1] if name in sys.argv else default
        names = {"run": CLI, "bare": BARE, "videos-only": VIDEOS_ONLY, "alone": ALONE, "legacy": LEGACY}
        only = option("--only")
        print(json.dumps(run("--quick" in sys.argv, "--no-aes" in sys.argv, int(option("--chunks", 0)) or None,
                             int(option("--reps", 0)) or None,
                             [names[n] for n in only.split(",")] if only else None), indent=1))
