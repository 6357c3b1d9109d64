"""Transfer benchmarks on the simulated lab (issue 7, scenarios 1 and 2; 3 and 4 are in small_trees.py):
the real CLI against bare rsync, and the helpers every transfer scenario shares.

Every figure that is judged is a ratio against a baseline measured in the same run (the machines are
shared and absolute times drift). Each scenario is a function ``scenario(quick) -> dict`` whose result
holds its raw figures and a list of table ``rows``; labs are torn down in ``finally`` blocks.

Run one scenario by hand: ``/usr/bin/python3 -m bench --only bulk`` (see ``bench/__main__.py``).
"""
from __future__ import annotations

import os
import pwd
import shlex
import shutil
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.integration.backup_node import Node  # noqa: E402
from tests.lab.lab import DEVICE_USER, Lab  # noqa: E402

PYTHON = "/usr/bin/python3"
WORK_ROOT = Path("/var/tmp")
PYCACHE = WORK_ROOT / "ethoscope-bench-pycache"
FAST_CIPHER = "aes128-gcm@openssh.com"
OURS_KEX = "^curve25519-sha256,curve25519-sha256@libssh.org"      # [ssh] kex's default
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


def ssh_opts(lab, cipher=None, known_hosts="/dev/null", kex=None):
    opts = ["ssh", "-i", str(lab.key_path), "-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes",
            "-o", "StrictHostKeyChecking=no", "-o", f"UserKnownHostsFile={known_hosts}",
            "-o", "LogLevel=ERROR"] + (["-o", f"KexAlgorithms={kex}"] if kex else [])
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


def runner_env(env=None):
    """The runner's environment: its modules byte-compiled once into a cache of the bench, as the
    Debian package installs them compiled (``make bench`` exports PYTHONDONTWRITEBYTECODE, which would
    make every timed pass compile the package from source first)."""
    env = dict(os.environ if env is None else env)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env["PYTHONPYCACHEPREFIX"] = str(PYCACHE)
    return env


def warm_bytecode():
    subprocess.run([PYTHON, "-c",
                    "import ethoscope_rsync.commands.cli, ethoscope_rsync.backup.passes, ethoscope_rsync.backup.pool"],
                   cwd=ROOT, env=runner_env(), check=True)


def run_cli(node, *args, timeout=3600, env=None):
    """Run ``ethoscope-backup run -c CONF ARGS`` (the real CLI, Debian's python, byte-compiled) and time it.

    -> dict(seconds, hwm_kb: peak RSS of the Python runner itself (VmHWM polled every 20 ms),
    rusage_maxrss_kb: wait4's figure (the largest of the runner and the children it waited for)).
    """
    env = runner_env(env)
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
    from ethoscope_rsync.config.load import load_config
    from ethoscope_rsync.config.devices import Device
    from ethoscope_rsync.backup.rsync import make_rsync_command
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
    reps = 2 if quick else 5          # the shared machine's noise is several times the 5 % judged here
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

        def bare(flags, cipher, kex=None):
            return ["rsync", *flags, "-e", ssh_opts(lab, cipher, known, kex), remote(device, "videos"), f"{dest}/"]

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
            f"bare -rt {FAST_CIPHER} with ours' key exchange ({OURS_KEX})": bare(["-rt"], FAST_CIPHER, OURS_KEX),
            f"ours' videos rsync argv + -c {FAST_CIPHER}": ours_rsync_argv(node, device, "videos", dest,
                                                                           FAST_CIPHER),
        }
        legacy = ["rsync", *LEGACY_FLAGS, "-e", shlex.join(["ssh", "-i", str(lab.key_path), "-o",
                                                            "StrictHostKeyChecking=no", "-o",
                                                            "UserKnownHostsFile=/dev/null", "-o",
                                                            "LogLevel=ERROR"]),
                  remote(device, "videos"), f"{dest}/"]
        # "ours" is a pass after the first contact (every pass but a device's very first): the node
        # knows the device's CPU and offers it AES-GCM first. name -> (CLI arguments, [ssh] keys, known)
        cli_diagnostics = {
            "ours --videos-only": (("--videos-only",), "", True),
            "ours at first contact (the cipher chosen from its probe)": ((), "", False),
        }
        times = {name: [] for name in ["ours (ethoscope-backup run)", "legacy", *variants, *diagnostics,
                                       *cli_diagnostics]}

        def one(name):
            shutil.rmtree(dest, ignore_errors=True)
            dest.mkdir()
            if name.startswith("ours (") or name in cli_diagnostics:
                extra_args, ssh_keys, known_device = cli_diagnostics.get(name, ((), "", True))
                node_now = fresh_node(lab, node_base)
                node_now.conf.write_text(node_now.conf.read_text().replace("[ssh]\n", "[ssh]\n" + ssh_keys))
                if known_device:     # untimed: the first contact (the device has no results to copy)
                    run_cli(node_now, "--results-only")
                os.sync()            # every timed run starts with nothing of an earlier one left to write back
                result = run_cli(node_now, "-j", "1", *extra_args)
                got = sum(p.stat().st_size for p in node_now.videos.rglob("*.h264"))
                if got != total:
                    raise RuntimeError(f"ours copied {got} of {total} bytes")
                times[name].append(result["seconds"])
                shutil.rmtree(node_now.base, ignore_errors=True)
                return
            argv = legacy if name == "legacy" else variants.get(name) or diagnostics[name]
            os.sync()
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
    fixed = fixed_cost(quick)
    added = fixed["median_s"]["ours"] - fixed["median_s"]["bare"]
    out["fixed_cost"] = fixed
    out["rows"] += [
        row("1 bulk video", f"[fixed] one 1 MB chunk: ours vs bare -rt {FAST_CIPHER}", fixed["median_s"]["ours"],
            fixed["median_s"]["bare"], note=f"median of {fixed['repetitions']} alternating runs; ours adds "
                                            f"{added * 1000:.0f} ms (quartiles {fixed['added_quartiles_ms']})"),
        row("1 bulk video", "[fixed] best bare + what ours adds, vs best bare", round(medians[best_name] + added, 3),
            medians[best_name], note="the bulk ratio without the run-to-run noise of the transfer itself"),
    ]
    return out


def fixed_cost(quick=False):
    """What a pass adds to a bare rsync where a shared machine's noise is small: one 1 MB chunk,
    ours (a device already contacted) and bare ``rsync -rt`` (aes128-gcm) one after the other."""
    reps = 4 if quick else 15
    with Work("fixed") as work, Lab(lab_name("fixed"), 1) as lab:
        device = lab.devices[0]
        lab.add_video_chunk(device, 1 << 20)
        known, dest = work / "known_hosts", work / "dest"
        known.write_text(lab.known_hosts_text())
        node = fresh_node(lab, work / "node")
        run_cli(node, "--results-only")
        bare = ["rsync", "-rt", "-e", ssh_opts(lab, FAST_CIPHER, known), remote(device, "videos"), f"{dest}/"]
        times = {"ours": [], "bare": []}
        for rep in range(reps):
            for name in (("ours", "bare") if rep % 2 == 0 else ("bare", "ours")):
                shutil.rmtree(node.videos if name == "ours" else dest, ignore_errors=True)
                dest.mkdir(exist_ok=True)
                times[name].append(run_cli(node, "-j", "1")["seconds"] if name == "ours" else timed(bare))
    added = sorted(o - b for o, b in zip(times["ours"], times["bare"]))
    quartiles = statistics.quantiles(added, n=4) if len(added) > 1 else added * 3
    return {"repetitions": reps, "times_s": times, "median_s": {k: med(v) for k, v in times.items()},
            "added_quartiles_ms": [round(q * 1000) for q in (quartiles[0], quartiles[2])]}


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
    from ethoscope_rsync.config.settings import BY_NAME
    return BY_NAME[("transfer", "jobs")].value
