"""Transfer benchmarks on the simulated lab (issue 7, scenarios 1-4): the real CLI against bare rsync.

Every figure that is judged is a ratio against a baseline measured in the same run (the machines are
shared and absolute times drift). Each scenario is a function ``scenario(quick) -> dict`` whose result
holds its raw figures and a list of table ``rows``; labs are torn down in ``finally`` blocks.

Run one scenario by hand: ``/usr/bin/python3 -m bench --only bulk`` (see ``bench/__main__.py``).
"""
from __future__ import annotations

import os
import pwd
import re
import shlex
import shutil
import statistics
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.integration.runner_helpers import Node  # noqa: E402
from tests.lab.lab import DEVICE_USER, Lab  # noqa: E402

PYTHON = "/usr/bin/python3"
WORK_ROOT = Path("/var/tmp")
FAST_CIPHER = "aes128-gcm@openssh.com"
LEGACY_FLAGS = ["-avz", "--progress", "--partial", "--timeout=300"]


# ------------------------------------------------------------------ small helpers

def row(scenario, measure, ours, baseline=None, target=None, unit="s", higher_is_better=False,
        ok=None, note=""):
    """One table row. target is the highest acceptable ours/baseline ratio (or an absolute bound
    when baseline is None)."""
    ratio = round(ours / baseline, 3) if baseline not in (None, 0) and ours is not None else None
    if ok is None and target is not None:
        value = ratio if baseline is not None else ours
        if value is not None:
            ok = value >= target if higher_is_better else value <= target
    return {"scenario": scenario, "measure": measure, "ours": ours, "baseline": baseline, "unit": unit,
            "ratio": ratio, "target": target, "target_kind": ">=" if higher_is_better else "<=",
            "target_on": "ratio" if baseline is not None else "value", "ok": ok, "note": note}


def med(values):
    return round(statistics.median(values), 3)


class Work:
    """A scratch directory under /var/tmp, removed at the end."""

    def __init__(self, tag):
        self.path = WORK_ROOT / f"ethoscope-bench-{os.getpid()}-{tag}"

    def __enter__(self):
        shutil.rmtree(self.path, ignore_errors=True)
        self.path.mkdir(parents=True)
        return self.path

    def __exit__(self, *exc):
        shutil.rmtree(self.path, ignore_errors=True)


def lab_name(tag):
    return f"bench{os.getpid()}-{tag}"


def chown_tree(top: Path):
    pw = pwd.getpwnam(DEVICE_USER)
    for dirpath, dirnames, filenames in os.walk(top):
        os.chown(dirpath, pw.pw_uid, pw.pw_gid)
        for name in filenames:
            os.chown(os.path.join(dirpath, name), pw.pw_uid, pw.pw_gid)


def ssh_opts(lab, cipher=None, known_hosts="/dev/null"):
    opts = ["ssh", "-i", str(lab.key_path), "-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes",
            "-o", "StrictHostKeyChecking=no", "-o", f"UserKnownHostsFile={known_hosts}",
            "-o", "LogLevel=ERROR"]
    if cipher:
        opts += ["-c", cipher, "-o", "Compression=no"]
    return shlex.join(opts)


def remote(device, kind):
    return f"{DEVICE_USER}@{device.ip}:/ethoscope_data/{kind}/"


def timed(argv, timeout=3600, check=True):
    t0 = time.perf_counter()
    p = subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, timeout=timeout)
    elapsed = time.perf_counter() - t0
    if check and p.returncode != 0:
        raise RuntimeError(f"{' '.join(map(str, argv[:6]))}... exited {p.returncode}: {p.stderr[-600:]}")
    return elapsed


def _vm_hwm_kb(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def run_cli(node, *args, timeout=3600, env=None):
    """Run ``ethoscope-backup run -c CONF ARGS`` (the real CLI, Debian's python) and time it.

    -> dict(seconds, hwm_kb: peak RSS of the Python runner itself (VmHWM polled every 20 ms),
    rusage_maxrss_kb: wait4's figure (the largest of the runner and the children it waited for)).
    """
    argv = [PYTHON, "-m", "ethoscope_rsync", "run", "-c", str(node.conf), *map(str, args)]
    t0 = time.perf_counter()
    proc = subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    hwm = [0]
    done = threading.Event()
    stderr_chunks = []

    def poll():
        while not done.wait(0.02):
            hwm[0] = max(hwm[0], _vm_hwm_kb(proc.pid))

    def drain():
        stderr_chunks.append(proc.stderr.read())

    threads = [threading.Thread(target=poll, daemon=True), threading.Thread(target=drain, daemon=True)]
    for t in threads:
        t.start()
    try:
        _, status, usage = os.wait4(proc.pid, 0)
    finally:
        done.set()
    elapsed = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    for t in threads:
        t.join(5)
    if proc.returncode != 0:
        text = b"".join(stderr_chunks).decode(errors="replace")
        raise RuntimeError(f"ethoscope-backup {' '.join(map(str, args))} exited {proc.returncode}: {text[-800:]}")
    return {"seconds": elapsed, "hwm_kb": hwm[0], "rusage_maxrss_kb": usage.ru_maxrss}


def fresh_node(lab, base: Path, extra=""):
    shutil.rmtree(base, ignore_errors=True)
    base.mkdir(parents=True)
    return Node(lab, base, extra)


def ours_rsync_argv(node, device, kind, dest, cipher=None):
    """The exact rsync argv the tool builds for one tree (no shared connection), optionally with a cipher."""
    from ethoscope_rsync.config import load_config
    from ethoscope_rsync.devices import Device
    from ethoscope_rsync.rsync import make_rsync_command
    config = load_config(node.conf)
    argv = list(make_rsync_command(config, Device(device.name, device.ip, device.id), kind,
                                   key=str(node.lab.key_path), folder=device.id))
    if cipher:
        at = argv.index("-e") + 1
        ssh = shlex.split(argv[at])
        argv[at] = shlex.join(ssh[:1] + ["-c", cipher] + ssh[1:])
    argv[-1] = f"{dest}/"
    return argv


# ------------------------------------------------------------------ 1. bulk video, one device

def bulk_video(quick=False):
    chunks, size = (2, 16 << 20) if quick else (4, 256 << 20)
    reps = 3
    out = {"chunks": chunks, "chunk_bytes": size, "repetitions": reps}
    with Work("bulk") as work, Lab(lab_name("bulk"), 1) as lab:
        device = lab.devices[0]
        for _ in range(chunks):
            lab.add_video_chunk(device, size)
        total = chunks * size
        node_base = work / "node"
        dest = work / "dest"
        known = work / "known_hosts"
        known.write_text(lab.known_hosts_text())

        def bare(flags, cipher):
            return ["rsync", *flags, "-e", ssh_opts(lab, cipher, known), remote(device, "videos"), f"{dest}/"]

        variants = {
            "bare -rt (ssh default cipher)": bare(["-rt"], None),
            f"bare -rt {FAST_CIPHER}": bare(["-rt"], FAST_CIPHER),
            f"bare -rt --whole-file {FAST_CIPHER}": bare(["-rt", "--whole-file"], FAST_CIPHER),
            f"bare -rt --whole-file --inplace {FAST_CIPHER}": bare(["-rt", "--whole-file", "--inplace"],
                                                                 FAST_CIPHER),
            "bare -rt --whole-file aes256-gcm": bare(["-rt", "--whole-file"], "aes256-gcm@openssh.com"),
        }
        node = fresh_node(lab, node_base)
        diagnostics = {
            "ours' videos rsync argv as is": ours_rsync_argv(node, device, "videos", dest),
            f"ours' videos rsync argv + -c {FAST_CIPHER}": ours_rsync_argv(node, device, "videos", dest,
                                                                          FAST_CIPHER),
            f"ours' videos rsync argv + -c {FAST_CIPHER} --whole-file":
                ours_rsync_argv(node, device, "videos", dest, FAST_CIPHER)[:-2] + ["--whole-file"]
                + ours_rsync_argv(node, device, "videos", dest)[-2:],
        }
        legacy = ["rsync", *LEGACY_FLAGS, "-e", shlex.join(["ssh", "-i", str(lab.key_path), "-o",
                                                            "StrictHostKeyChecking=no", "-o",
                                                            "UserKnownHostsFile=/dev/null", "-o",
                                                            "LogLevel=ERROR"]),
                  remote(device, "videos"), f"{dest}/"]
        cli_diagnostics = {     # name -> (extra CLI arguments, extra [ssh] keys)
            "ours --videos-only": (("--videos-only",), ""),
            f"ours with [ssh] ciphers = {FAST_CIPHER}": ((), f"ciphers = {FAST_CIPHER}\n"),
        }
        times = {name: [] for name in ["ours (ethoscope-backup run)", "legacy", *variants, *diagnostics,
                                       *cli_diagnostics]}

        def one(name):
            shutil.rmtree(dest, ignore_errors=True)
            dest.mkdir()
            if name.startswith("ours (") or name in cli_diagnostics:
                extra_args, ssh_keys = cli_diagnostics.get(name, ((), ""))
                node_now = fresh_node(lab, node_base)
                node_now.conf.write_text(node_now.conf.read_text().replace("[ssh]\n", "[ssh]\n" + ssh_keys))
                result = run_cli(node_now, "-j", "1", *extra_args)
                got = sum(p.stat().st_size for p in node_now.videos.rglob("*.h264"))
                if got != total:
                    raise RuntimeError(f"ours copied {got} of {total} bytes")
                times[name].append(result["seconds"])
                shutil.rmtree(node_now.base, ignore_errors=True)
                return
            argv = legacy if name == "legacy" else variants.get(name) or diagnostics[name]
            times[name].append(timed(argv))
            got = sum(p.stat().st_size for p in dest.rglob("*.h264"))
            if got != total:
                raise RuntimeError(f"{name} copied {got} of {total} bytes")

        order = list(times)
        for rep in range(reps):
            for name in (order if rep % 2 == 0 else order[::-1]):   # alternate the order
                one(name)
        shutil.rmtree(dest, ignore_errors=True)
    medians = {name: med(v) for name, v in times.items()}
    best_name = min(variants, key=lambda n: medians[n])
    ours = medians["ours (ethoscope-backup run)"]
    out.update(times_s=times, median_s=medians, best_bare=best_name,
               throughput_mb_s={n: round(total / 1e6 / m, 1) for n, m in medians.items()})
    out["rows"] = [
        row("1 bulk video", f"ours vs best bare ({best_name})", ours, medians[best_name], 1.05),
        row("1 bulk video", "ours vs legacy rsync -avz", ours, medians["legacy"], 0.70),
    ]
    for name in [*cli_diagnostics, *diagnostics]:
        out["rows"].append(row("1 bulk video", f"[diag] {name} vs best bare", medians[name],
                               medians[best_name], note="diagnostic, not a target"))
    return out


# ------------------------------------------------------------------ 2. many rate-limited devices

def many_devices(quick=False):
    n, chunks, size = (4, 2, 2 << 20) if quick else (16, 2, 8 << 20)
    rate = "40mbit"
    reps = 2 if quick else 3
    out = {"devices": n, "bytes_per_device": chunks * size, "rate": rate, "repetitions": reps}
    with Work("many") as work, Lab(lab_name("many"), n) as lab:
        for device in lab.devices:
            for _ in range(chunks):
                lab.add_video_chunk(device, size)
            lab.rate_limit(device, rate)
        base = work / "node"
        first = lab.devices[0]
        known = work / "known_hosts"
        known.write_text(lab.known_hosts_text())
        bare_dest = work / "bare"

        def ours(*args):
            node = fresh_node(lab, base)
            result = run_cli(node, *args)
            got = sum(p.stat().st_size for p in node.videos.rglob("*.h264"))
            expected = chunks * size * (1 if "-e" in args else n)
            if got != expected:
                raise RuntimeError(f"ours {args} copied {got} of {expected} bytes")
            return result["seconds"]

        def bare_one():
            shutil.rmtree(bare_dest, ignore_errors=True)
            return timed(["rsync", "-rt", "-e", ssh_opts(lab, FAST_CIPHER, known), remote(first, "videos"),
                          f"{bare_dest}/"])

        jobs = n
        times = {"ideal": [], "bare_ideal": [], f"j{jobs}": []}
        cases = {"ideal": lambda: ours("-e", first.name, "-j", "1"), "bare_ideal": bare_one,
                 f"j{jobs}": lambda: ours("-j", str(jobs))}
        for rep in range(reps):
            for name in (list(cases) if rep % 2 == 0 else list(cases)[::-1]):
                times[name].append(cases[name]())
        times["default_j"] = [ours()]
        times["j1"] = [ours("-j", "1")]
    medians = {k: med(v) for k, v in times.items()}
    default_jobs = _default_jobs()   # the shipped default -j
    out.update(times_s=times, median_s=medians, default_jobs=default_jobs)
    ideal = medians["ideal"]
    out["rows"] = [
        row("2 many devices", f"{n} dev -j {jobs} vs one device alone", medians[f"j{jobs}"], ideal, 1.5),
        row("2 many devices", f"{n} dev default -j {default_jobs} vs one alone", medians["default_j"], ideal,
            note="report only"),
        row("2 many devices", f"{n} dev -j 1 (sequential) vs one alone", medians["j1"], ideal,
            note=f"report only; {n}x expected"),
        row("2 many devices", f"{n} dev -j {jobs} vs sequential -j 1", medians[f"j{jobs}"], medians["j1"],
            note="report only"),
        row("2 many devices", "one device: ours vs bare rsync", ideal, medians["bare_ideal"],
            note="per-device overhead on a 40 Mbit/s link"),
    ]
    return out


def _default_jobs():
    spec = (ROOT / "ethoscope_rsync" / "backup.configspec").read_text()
    match = re.search(r"^jobs\s*=\s*integer\(.*default=(\d+)\)", spec, re.M)
    return int(match.group(1)) if match else None


# ------------------------------------------------------------------ small trees (scenarios 3 and 4)

def small_tree(lab, device, experiments, files_per_experiment, size=2048):
    """`experiments` folders in results (one small SQLite db + small files each) and videos (small
    chunks): about 2 * experiments * files_per_experiment files."""
    lab.populate(device, experiments=experiments, db_rows=20, video_chunks=0, mp4=False)
    for folder in sorted((device.data_root / "results" / device.id / device.name).iterdir()):
        ts = folder.name
        vfolder = device.data_root / "videos" / device.id / device.name / ts
        vfolder.mkdir(parents=True, exist_ok=True)
        for n in range(files_per_experiment - 1):
            (folder / f"{ts}_{device.id}_snapshot_{n:05d}.png").write_bytes(os.urandom(size))
        for n in range(files_per_experiment):
            (vfolder / f"{ts}_{device.id}_1280x960@25_{n:05d}.h264").write_bytes(os.urandom(size))
    chown_tree(device.data_root)


def count_files(root: Path):
    files = dirs = 0
    for _, dirnames, filenames in os.walk(root):
        dirs += len(dirnames)
        files += len(filenames)
    return files, dirs


def bare_parallel(lab, devices, dest: Path, known, jobs):
    """Bare rsync -rt of both trees of every device, `jobs` devices at once, ssh options as ours'."""
    def device_job(device):
        for kind in ("results", "videos"):
            target = dest / device.name / kind
            target.mkdir(parents=True, exist_ok=True)
            timed(["rsync", "-rt", "-e", ssh_opts(lab, None, known), remote(device, kind), f"{target}/"])

    t0 = time.perf_counter()
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        list(pool.map(device_job, devices))
    return time.perf_counter() - t0


def strace_walk(node, args, work: Path):
    """Count the destination-tree syscalls of the Python runner (threads included, children that
    exec'd — rsync, ssh — excluded) and of the local rsync receivers, during one pass."""
    trace = work / "strace.out"
    argv = ["strace", "-f", "-qq", "-s", "400", "-o", str(trace), "-e",
            "trace=execve,clone,clone3,fork,vfork,openat,newfstatat,statx,lstat,stat",
            PYTHON, "-m", "ethoscope_rsync", "run", "-c", str(node.conf), *args]
    p = subprocess.run(argv, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                       timeout=1800)
    if p.returncode != 0:
        raise RuntimeError(f"strace'd pass exited {p.returncode}: {p.stderr[-500:]}")
    lines = [line.split(None, 1) for line in trace.read_text(errors="replace").splitlines()]
    lines = [(int(pid), rest) for pid, rest in (x for x in lines if len(x) == 2 and x[0].isdigit())]
    first_pid = lines[0][0]
    program, parent = {first_pid: "python"}, {}
    clone_re = re.compile(r"^(?:<\.\.\. )?(?:clone3?|fork|vfork)\b.*= (\d+)$")
    for pid, rest in lines:
        match = clone_re.match(rest)
        if match:
            parent[int(match.group(1))] = pid
        elif rest.startswith("execve(") and pid != first_pid and rest.rstrip().endswith("= 0"):
            program[pid] = rest.split('"')[1].rsplit("/", 1)[-1]

    def who(pid):
        seen = 0
        while pid not in program and pid in parent and seen < 64:
            pid, seen = parent[pid], seen + 1
        return program.get(pid, "?")

    dests = (str(node.results), str(node.videos))
    counts = {"python": {"stat": 0, "opendir": 0}, "rsync": {"stat": 0, "opendir": 0}}
    for pid, rest in lines:
        name = who(pid)
        if name not in counts:
            continue
        call = rest.split("(", 1)[0].lstrip("<. ")
        absolute = '"/' in rest
        if absolute and not any(d in rest for d in dests):
            continue
        if not absolute and (name == "python" or "AT_EMPTY_PATH" in rest):
            continue   # rsync receivers chdir into the destination and use relative names
        if call == "openat" and "O_DIRECTORY" in rest:
            counts[name]["opendir"] += 1
        elif call in ("newfstatat", "statx", "lstat", "stat"):
            counts[name]["stat"] += 1
    trace.unlink()
    return counts


def no_change(quick=False):
    n, experiments, per = (4, 3, 50) if quick else (16, 10, 100)
    jobs = n
    reps = 2 if quick else 3
    out = {"devices": n, "files_per_device": 2 * experiments * per, "jobs": jobs, "repetitions": reps}
    with Work("nochange") as work, Lab(lab_name("nochg"), n) as lab:
        for device in lab.devices:
            small_tree(lab, device, experiments, per)
        known = work / "known_hosts"
        known.write_text(lab.known_hosts_text())
        node = fresh_node(lab, work / "node")
        out["first_pass_s"] = round(run_cli(node, "-j", jobs)["seconds"], 3)
        bare_dest = work / "bare"
        out["bare_first_pass_s"] = round(bare_parallel(lab, lab.devices, bare_dest, known, jobs), 3)
        files, dirs = count_files(node.results)
        vfiles, vdirs = count_files(node.videos)
        out["destination_files"], out["destination_dirs"] = files + vfiles, dirs + vdirs
        times = {"ours": [], "bare": []}
        cases = {"ours": lambda: run_cli(node, "-j", jobs)["seconds"],
                 "bare": lambda: bare_parallel(lab, lab.devices, bare_dest, known, jobs)}
        for rep in range(reps):
            for name in (list(cases) if rep % 2 == 0 else list(cases)[::-1]):
                times[name].append(cases[name]())
        before = {str(p): p.stat().st_mtime_ns for p in node.videos.rglob("*.h264")}
        walk = strace_walk(node, ["-j", str(jobs)], work)
        rewritten = sum(1 for p, m in before.items() if Path(p).stat().st_mtime_ns != m)
    medians = {k: med(v) for k, v in times.items()}
    out.update(times_s=times, median_s=medians, syscalls_on_destination=walk, files_rewritten=rewritten)
    py = walk["python"]
    out["rows"] = [
        row("3 no-change pass", f"{n}x{2 * experiments * per} files, ours -j {jobs} vs bare rsync x{jobs}",
            medians["ours"], medians["bare"], 1.5),
        row("3 no-change pass", "runner's dir opens / destination dirs", py["opendir"], out["destination_dirs"],
            unit="calls", note=f"rsync receivers: {walk['rsync']['opendir']} opens"),
        row("3 no-change pass", "runner's stat calls / destination files", py["stat"], out["destination_files"],
            unit="calls", target=0.5,
            note=f"rsync receivers: {walk['rsync']['stat']} stats; must not walk the tree"),
        row("3 no-change pass", "files rewritten by the no-change pass", rewritten, unit="files", target=0),
    ]
    return out


# ------------------------------------------------------------------ 4. scale

def scale(quick=False):
    small, large = (8, 16) if quick else (64, 128)
    experiments, per = 1, 10          # ~20 files per device
    more = 4                          # files x4 on the small set, for the growth in files
    out = {"devices": [small, large], "files_per_device": 2 * experiments * per, "jobs": 16}
    with Work("scale") as work, Lab(lab_name("scale"), large, decoys=False) as lab:
        t0 = time.perf_counter()
        for device in lab.devices:
            small_tree(lab, device, experiments, per)
        out["populate_s"] = round(time.perf_counter() - t0, 1)
        select = ",".join(d.name for d in lab.devices[:small])
        passes = {}

        def measure(tag, *args, keep=None):
            node = keep or fresh_node(lab, work / "node")
            result = run_cli(node, "-j", "16", *args)
            passes[tag] = {"seconds": round(result["seconds"], 3), "runner_peak_rss_mb":
                           round(result["hwm_kb"] / 1024, 1), "wait4_maxrss_mb":
                           round(result["rusage_maxrss_kb"] / 1024, 1)}
            return node

        measure(f"{small} devices, new files", "-e", select)
        node = measure(f"{large} devices, new files")
        measure(f"{large} devices, no change", keep=node)
        shutil.rmtree(node.base, ignore_errors=True)
        for device in lab.devices[:small]:                    # x4 the files on the small set
            for folder in (device.data_root / "videos" / device.id / device.name).iterdir():
                for k in range(2 * per * (more - 1)):
                    (folder / f"extra_{k:05d}.h264").write_bytes(os.urandom(2048))
            chown_tree(device.data_root / "videos")
        measure(f"{small} devices, new files, x{more} files", "-e", select)
    s_new, l_new = passes[f"{small} devices, new files"], passes[f"{large} devices, new files"]
    l_same = passes[f"{large} devices, no change"]
    s_more = passes[f"{small} devices, new files, x{more} files"]
    growth = {
        "seconds_per_device_new": round((l_new["seconds"] - s_new["seconds"]) / (large - small), 4),
        "seconds_per_device_no_change": round(l_same["seconds"] / large, 4),
        "rss_mb_per_device": round((l_new["runner_peak_rss_mb"] - s_new["runner_peak_rss_mb"])
                                   / (large - small), 4),
        "time_ratio_2x_devices": round(l_new["seconds"] / s_new["seconds"], 3),
        "time_ratio_4x_files": round(s_more["seconds"] / s_new["seconds"], 3),
        "rss_ratio_4x_files": round(s_more["runner_peak_rss_mb"] / s_new["runner_peak_rss_mb"], 3),
    }
    out.update(passes=passes, growth=growth)
    out["rows"] = [
        row("4 scale", f"runner peak RSS, {large} devices", l_new["runner_peak_rss_mb"], unit="MB", target=60),
        row("4 scale", f"runner peak RSS, {small} devices", s_new["runner_peak_rss_mb"], unit="MB", target=60),
        row("4 scale", f"wall {large} vs {small} devices (new files)", l_new["seconds"], s_new["seconds"],
            note=f"{growth['seconds_per_device_new']} s per added device; linear = 2.0"),
        row("4 scale", f"wall {large} devices no-change vs new files", l_same["seconds"], l_new["seconds"],
            note=f"{growth['seconds_per_device_no_change']} s per device"),
        row("4 scale", f"wall {small} devices, x{more} files vs x1", s_more["seconds"], s_new["seconds"],
            note=f"RSS ratio {growth['rss_ratio_4x_files']}"),
        row("4 scale", f"RSS {large} vs {small} devices", l_new["runner_peak_rss_mb"],
            s_new["runner_peak_rss_mb"], unit="MB", note=f"{growth['rss_mb_per_device']} MB per added device"),
    ]
    return out
