"""A new device's first full copy (issue 26, scenario 11): where the product's wall time goes, and
whether anything in it grows with the data. One device, 1.2 GB of video and a small results tree;
every variant alternates with the others in one run (paired repetitions, medians and ranges):

- ``ethoscope-backup run`` (the real command line, a fresh node: a device's first contact) against
  bare ``rsync -rt`` of what it copies (both trees in one command, with the cipher and key exchange the
  product chooses), ``run --videos-only`` against bare ``rsync -rt`` of the videos, and both against
  the seed's legacy ``rsync -avz`` (its two commands, results then videos);
- the fixed cost, whatever the size: run and bare rsync of a 1 MiB tree, one ssh connection (the
  probe's), the interpreter with a pass's imports; and the floor it sets: (bare + fixed) / bare;
- the product's own videos rsync argv alone (stdout to /dev/null) and through ``execute.stream`` +
  ``OutputReader`` (events drained by a second thread, as the pass's writer does);
- the profile: the real pass (``run_pass``) in a child process whose process runner, discovery and
  status/history writes are wrapped with clocks: wall time split into discovery, the probe, the
  results stage, the videos stage, the status writes, and what comes before and after the videos.
- ``without_aes``: the device's CPU says it has no AES instructions (the lab's emulation): chacha20.

Diagnostics by hand: ``BENCH_VARIANT`` (see _variant) takes one suspect away from the profiled pass;
``cpu`` in it adds each process's CPU seconds (the probe, each rsync with its ssh, the shared connection).
``rate`` shapes the device's link (``--rate 1gbit``: a Raspberry Pi 4's Ethernet; scenario first-1g).
Run: ``/usr/bin/python3 -m bench --only first,first-noaes,first-1g`` (or ``--quick``).
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

from bench.transfer import (LEGACY_FLAGS, OURS_KEX, PYTHON, Work, fresh_node, lab_name, med, remote, row,  # noqa: E402
                            run_cli, runner_env, ssh_opts, warm_bytecode)
from tests.lab.lab import DEVICE_USER, Lab  # noqa: E402

SCENARIO = "11 first copy"


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


def _alone(argv, cpu=None, env=None) -> float:
    """Seconds of one command (an rsync) with its stdout to /dev/null; its CPU seconds (and its ssh's)
    appended to `cpu`."""
    start, before = time.perf_counter(), _cpu_seconds(resource.RUSAGE_CHILDREN)
    process = subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, timeout=3600,
                             cwd=ROOT, env=env)
    if process.returncode != 0:
        raise RuntimeError(f"{argv[0]} exited {process.returncode}: {process.stderr[-400:]}")
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


def _ratios(ours, baseline) -> list:
    return sorted(o / b for o, b in zip(ours, baseline))


def _paired(ours, baseline) -> str:
    ratios = _ratios(ours, baseline)
    return f"paired ratios {ratios[0]:.3f}-{ratios[-1]:.3f}, their median {med(ratios):.3f}"


def _judged(measure, ours, baseline, target, note="") -> dict:
    """A judged row: medians shown with each one's range (a gap is noise where they overlap), the
    target judged on the median of the paired ratios."""
    ok = med(_ratios(ours, baseline)) <= target
    overlap = min(ours) <= max(baseline) and min(baseline) <= max(ours)
    ranges = (f"ours {_spread(ours)} s, baseline {_spread(baseline)} s"
              + ("; the ranges overlap: the gap is noise" if overlap else ""))
    return row(SCENARIO, measure, med(ours), med(baseline), target, ok=ok,
               note=f"{ranges}; {_paired(ours, baseline)}" + (f"; {note}" if note else ""))


ALONE, READER, PROFILED = "videos rsync alone", "videos rsync through the reader", "the pass, instrumented"
CLI, VIDEOS_ONLY = "ethoscope-backup run", "ethoscope-backup run --videos-only"
BARE, BARE_VIDEOS = "bare rsync -rt, both trees", "bare rsync -rt, the videos"
LEGACY = "legacy rsync -avz, the seed's two commands"
FIXED = {"run": "ethoscope-backup run, 1 MiB", "bare": "bare rsync -rt, 1 MiB",
         "ssh": "one ssh connection (ssh true)", "python": "the interpreter and a pass's imports"}


def _argvs(lab, device, dest, cipher, known) -> dict:
    """The baselines, copying what the product copies: bare `rsync -rt` of both trees in one command
    and of the videos alone (the product's cipher and key exchange), the seed's two commands."""
    ssh = ssh_opts(lab, cipher, known, kex=OURS_KEX)
    trees = [remote(device, kind).rstrip("/") for kind in ("results", "videos")]
    legacy_ssh = shlex.join(["ssh", "-i", str(lab.key_path), "-o", "StrictHostKeyChecking=no", "-o",
                             "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR"])
    return {BARE: [["rsync", "-rt", "-e", ssh, *trees, f"{dest}/"]],
            BARE_VIDEOS: [["rsync", "-rt", "-e", ssh, remote(device, "videos"), f"{dest}/"]],
            LEGACY: [["rsync", *LEGACY_FLAGS, "-e", legacy_ssh, remote(device, kind), f"{dest}/{kind}/"]
                     for kind in ("results", "videos")],
            "ssh": [shlex.split(ssh) + [f"{DEVICE_USER}@{device.ip}", "true"]],
            "python": [[PYTHON, "-c", "import ethoscope_rsync.commands.cli, ethoscope_rsync.backup.passes, "
                        "ethoscope_rsync.backup.pool"]]}


def _fixed_cost(lab, work, device, argvs, reps) -> dict:
    """What a first copy costs whatever its size: run and bare rsync of a 1 MiB tree, one ssh
    connection and the interpreter with a pass's imports, alternating -> {name: [seconds]}."""
    dest, times = work / "dest", {name: [] for name in FIXED}
    for rep in range(reps):
        for name in (list(FIXED) if rep % 2 == 0 else list(FIXED)[::-1]):
            shutil.rmtree(dest, ignore_errors=True)
            dest.mkdir()
            if name == "run":
                times[name].append(run_cli(fresh_node(lab, work / "node"), "-j", "1")["seconds"])
            else:
                argv_of = BARE if name == "bare" else name
                times[name].append(sum(_alone(argv, env=runner_env()) for argv in argvs[argv_of]))
    shutil.rmtree(dest, ignore_errors=True)
    return times


def _fixed_rows(fixed, bare_big, label) -> list:
    m = {name: med(values) for name, values in fixed.items()}
    extra = m["run"] - m["bare"]
    return [
        row(SCENARIO, f"[fixed] run vs bare -rt, a 1 MiB first copy ({label})", m["run"], m["bare"],
            note=_paired(fixed["run"], fixed["bare"]) + f"; the product's fixed cost {extra * 1000:.0f} ms"),
        row(SCENARIO, f"[fixed] of which one ssh connection, the probe's ({label})", m["ssh"],
            note=f"range {_spread(fixed['ssh'])} s"),
        row(SCENARIO, f"[fixed] of which the interpreter and a pass's imports ({label})", m["python"],
            note=f"range {_spread(fixed['python'])} s"),
        row(SCENARIO, f"[fixed] floor: (bare + the fixed cost) / bare at this size ({label})", bare_big + extra,
            bare_big, note=f"1.05 needs a bare copy of {extra / 0.05:.1f} s or more"),
    ]


def run(quick=False, without_aes=False, chunks=None, reps=None, only=None, rate=None):
    """`chunks` of 200 MB (default 6: 1.2 GB), `reps` repetitions, `only` a subset of the variants
    (the ones the rows need are measured anyway: by hand, ``--chunks 60 --reps 2 --only run,bare``),
    `rate` the device's link shaped (tc tbf, e.g. 1gbit: a Raspberry Pi 4's Ethernet)."""
    chunks, size = (2, 16 << 20) if quick else (chunks or 6, 200 << 20)
    reps = reps or (2 if quick else 5)
    cipher = "chacha20-poly1305@openssh.com" if without_aes else "aes128-gcm@openssh.com"
    out = {"repetitions": reps, "without_aes": without_aes, "cipher": cipher, "rate": rate or "unshaped"}
    tag = "firstna" if without_aes else "first"
    with Work(tag) as work, Lab(lab_name(tag), 1, without_aes={1} if without_aes else ()) as lab:
        device = lab.devices[0]
        lab.populate(device, experiments=1, db_rows=2000, video_chunks=0, mp4=False)
        lab.add_video_chunk(device, 1 << 20)
        if rate:
            lab.rate_limit(device, rate)
        dest, known = work / "dest", work / "known_hosts"
        known.write_text(lab.known_hosts_text())
        argvs = _argvs(lab, device, dest, cipher, known)
        warm_bytecode()
        fixed = _fixed_cost(lab, work, device, argvs, 2 if quick else 6) if only is None else {}
        for _ in range(chunks):
            lab.add_video_chunk(device, size)
        total = sum(p.stat().st_size for p in (device.data_root / "videos").rglob("*.h264"))
        out["bytes"] = total
        argvs[ALONE] = [_videos_argv(fresh_node(lab, work / "node"), device, dest, cipher)]
        profiles, times = [], {name: [] for name in (ALONE, READER, PROFILED, CLI, BARE, BARE_VIDEOS, LEGACY,
                                                     VIDEOS_ONLY)}
        cpu = {ALONE: [], CLI: [], BARE: [], BARE_VIDEOS: [], VIDEOS_ONLY: []}

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
                times[name].append(_through_reader(argvs[ALONE][0], device))
            else:
                times[name].append(sum(_alone(argv, cpu.get(name)) for argv in argvs[name]))
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
    out.update(times_s=times, median_s={name: med(values) for name, values in times.items() if values},
               node_cpu_s=cpu, fixed_s=fixed)
    label = (f"{'no AES, ' if without_aes else ''}{total / 1e6:.0f} MB, {cipher.split('@')[0]}"
             + (f", link {rate}" if rate else ""))
    out["rows"] = _rows(times, cpu, label, only)
    if only is None:
        out["rows"] += _fixed_rows(fixed, out["median_s"][BARE], label)
        out["rows"] += _diagnostics(times, cpu, out, label)
    return out


def _rows(times, cpu, label, only) -> list:
    """The judged rows (issue 26 item 3) of the variants measured."""
    judged = [(CLI, BARE, 1.05, "run (first contact) vs bare -rt of both trees, same cipher"),
              (VIDEOS_ONLY, BARE_VIDEOS, 1.05, "run --videos-only vs bare -rt of the videos, same cipher"),
              (CLI, LEGACY, 0.70, "run (first contact) vs legacy rsync -avz (the seed's two commands)"),
              (VIDEOS_ONLY, CLI, 1.0, "run --videos-only vs run (unified)")]
    out = []
    for ours, base, target, measure in judged:
        if times[ours] and times[base]:
            note = f"node CPU {med(cpu[ours])} / {med(cpu[base])} s" if cpu.get(ours) and cpu.get(base) else ""
            out.append(_judged(f"{measure} ({label})", times[ours], times[base], target, note))
    if only is not None:
        out += [row(SCENARIO, f"{name} ({label})", med(times[name]), note=f"range {_spread(times[name])} s")
                for name in only if times[name]]
    return out


def _diagnostics(times, cpu, out, label) -> list:
    stage = out["profile_s"]["videos"]
    rows = [
        row(SCENARIO, f"[diag] videos rsync through the reader vs alone ({label})", med(times[READER]),
            med(times[ALONE]), note=_paired(times[READER], times[ALONE])),
        row(SCENARIO, f"[diag] the pass's videos stage vs the same rsync alone ({label})", med(stage),
            med(times[ALONE]), note=_paired(stage, times[ALONE]) + "; the pass instrumented"),
        row(SCENARIO, f"[diag] node CPU s: run vs bare -rt of both trees ({label})", med(cpu[CLI]), med(cpu[BARE]),
            note=f"run {_spread(cpu[CLI])}, bare {_spread(cpu[BARE])}; run's own python included"),
    ]
    for name, median in out["profile_median_s"].items():
        rows.append(row(SCENARIO, f"[profile] {name} ({label})", median,
                        note=f"range {_spread(out['profile_s'][name])} s"))
    return rows


if __name__ == "__main__":
    if sys.argv[1:2] == ["--child"]:
        child(sys.argv[2])
    else:
        def option(name, default=None):
            return sys.argv[sys.argv.index(name) + 1] if name in sys.argv else default
        names = {"run": CLI, "bare": BARE, "bare-videos": BARE_VIDEOS, "videos-only": VIDEOS_ONLY, "alone": ALONE,
                 "legacy": LEGACY}
        only = option("--only")
        print(json.dumps(run("--quick" in sys.argv, "--no-aes" in sys.argv, int(option("--chunks", 0)) or None,
                             int(option("--reps", 0)) or None,
                             [names[n] for n in only.split(",")] if only else None, option("--rate")), indent=1))
