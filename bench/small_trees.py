"""Transfer benchmarks of small trees on the simulated lab (issue 7, scenarios 3 and 4): a pass that
finds nothing new on 16 devices against 16 bare rsyncs (wall time, the devices' CPU, the runner's
calls on the destination), and how a pass grows from 64 to 128 devices."""
from __future__ import annotations

import os
import re
import shutil
import statistics
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from bench import device_cpu
from bench.transfer import PYTHON, ROOT, Lab, Work, chown_tree, fresh_node, lab_name, med, remote, row, run_cli, \
    ssh_opts, timed


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
        times, device_s = {"ours": [], "bare": []}, {"ours": [], "bare": []}
        cases = {"ours": lambda: run_cli(node, "-j", jobs)["seconds"],
                 "bare": lambda: bare_parallel(lab, lab.devices, bare_dest, known, jobs)}
        for rep in range(reps):
            for name in (list(cases) if rep % 2 == 0 else list(cases)[::-1]):
                seconds, cpu = device_cpu.measured(lab, cases[name])
                times[name].append(seconds)
                device_s[name].append(cpu)
        before = {str(p): p.stat().st_mtime_ns for p in node.videos.rglob("*.h264")}
        walk = strace_walk(node, ["-j", str(jobs)], work)
        rewritten = sum(1 for p, m in before.items() if Path(p).stat().st_mtime_ns != m)
    medians = {k: med(v) for k, v in times.items()}
    device_median = {k: round(statistics.median(v), 4) for k, v in device_s.items()}
    out.update(times_s=times, median_s=medians, syscalls_on_destination=walk, files_rewritten=rewritten,
               device_cpu_s_per_device=device_s, device_cpu_median_s=device_median)
    py = walk["python"]
    out["rows"] = [
        row("3 no-change pass", f"{n}x{2 * experiments * per} files, ours -j {jobs} vs bare rsync x{jobs}",
            medians["ours"], medians["bare"], 1.2),
        row("3 no-change pass", "device CPU s per device (sshd, rsync, probe): ours vs bare rsync",
            device_median["ours"], device_median["bare"], ok=device_median["ours"] <= 0.1,
            note="target <= 0.1 s per device; from each device's sshd (it reaps all it started)"),
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
        row("4 scale", f"runner peak RSS, {large} devices", l_new["runner_peak_rss_mb"], unit="MB", target=40),
        row("4 scale", f"runner peak RSS, {small} devices", s_new["runner_peak_rss_mb"], unit="MB", target=40),
        row("4 scale", f"wall {large} vs {small} devices (new files)", l_new["seconds"], s_new["seconds"],
            target=2.1, note=f"{growth['seconds_per_device_new']} s per added device; linear = 2.0"),
        row("4 scale", f"wall {large} devices no-change vs new files", l_same["seconds"], l_new["seconds"],
            note=f"{growth['seconds_per_device_no_change']} s per device"),
        row("4 scale", f"wall {small} devices, x{more} files vs x1", s_more["seconds"], s_new["seconds"],
            note=f"RSS ratio {growth['rss_ratio_4x_files']}"),
        row("4 scale", f"RSS {large} vs {small} devices", l_new["runner_peak_rss_mb"],
            s_new["runner_peak_rss_mb"], unit="MB", note=f"{growth['rss_mb_per_device']} MB per added device"),
    ]
    return out
