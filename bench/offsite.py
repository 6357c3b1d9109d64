"""The second copy (issue 25, scenario 9): ``ethoscope-backup offsite`` beside plain ``restic backup`` of
the same two folders, in the same run, each into a repository of its own.

The archive is a simulated lab's, made by real passes (databases recovered into place, video chunks,
the raw database mirror). Per round, both variants send a first copy into fresh local repositories,
in alternating order (ours first in even rounds); then twice a pass brings new data (another
experiment per device) and both send the next copy, again alternating: the first of these is ours
with the day's retention (forget, prune, the repository's size: once a day), the second a copy the
same day (restic backup alone). Figures: wall time (ours / plain, median of the rounds, with the
range of the per-round ratios), the node's CPU (user + system of the command and every process it
started: python, every restic), and the bytes each variant read and added.

What differs on purpose: ours leaves out the raw mirror, the partial and temporary files (plain
restic sends the raw mirror too), and after the snapshot applies the retention (``forget``) and, on
the first run, a prune; it starts as a Python program and walks the destinations for databases.

Run: ``/usr/bin/python3 -m bench --only offsite [--quick]``.
"""
from __future__ import annotations

import json
import os
import resource
import shutil
import statistics
import subprocess
import time
from pathlib import Path

from bench.transfer import PYTHON, ROOT, Work, lab_name, row, runner_env, run_cli, fresh_node
from tests.lab.lab import Lab

TARGET = 1.10          # ours may take 10 % longer than plain restic
# The first copy; the next, with the day's retention (forget, the first prune, the repository's size:
# once a day from the second day on); then one more the same day (restic backup alone, as every run
# between two retentions). New data (a pass) before each but the first.
STAGES = ("first", "retention", "incremental")
MEASURES = {"first": "first copy", "retention": "next copy with the day's retention",
            "incremental": "incremental copy (same day)"}
PASSWORD = "bench password"


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _timed(argv, env=None, cwd=None) -> tuple:
    """(wall seconds, CPU seconds of the process and all it started, stdout)."""
    cpu, t0 = _children_cpu(), time.perf_counter()
    p = subprocess.run(argv, env=env, cwd=cwd, capture_output=True, text=True, timeout=3600)
    wall, spent = time.perf_counter() - t0, _children_cpu() - cpu
    if p.returncode != 0:
        raise RuntimeError(f"{' '.join(map(str, argv[:5]))}... exited {p.returncode}: {p.stderr[-800:]}")
    return wall, spent, p.stdout


def _restic_env(repository: Path, password: Path) -> dict:
    return dict(os.environ, RESTIC_REPOSITORY=str(repository), RESTIC_PASSWORD_FILE=str(password))


def _init(repository: Path, password: Path) -> None:
    subprocess.run(["restic", "init"], env=_restic_env(repository, password), capture_output=True, check=True)


def _plain(node, repository: Path, password: Path, cache: Path) -> dict:
    """What a lab's own script does: restic backup of the two folders."""
    wall, cpu, out = _timed(["restic", "--cache-dir", str(cache), "backup", "--json", str(node.results),
                             str(node.videos)], env=_restic_env(repository, password))
    summary = json.loads(out.strip().splitlines()[-1])
    return {"wall": wall, "cpu": cpu, "read": summary["total_bytes_processed"], "added": summary["data_added"]}


def _ours(node) -> dict:
    wall, cpu, _ = _timed([PYTHON, "-m", "ethoscope_rsync", "offsite", "-c", str(node.conf)], env=runner_env(),
                          cwd=ROOT)
    last = json.loads((node.state / "offsite.json").read_text())["last"]
    return {"wall": wall, "cpu": cpu, "read": last["bytes"], "added": last["added"]}


def _round(number: int, node, work: Path, password: Path, grow) -> dict:
    """One round: first copies into fresh repositories, new data, incremental copies; alternating."""
    ours_repo, plain_repo = work / f"ours-{number}", work / f"plain-{number}"
    plain_cache = work / f"plain-cache-{number}"
    for repository in (ours_repo, plain_repo):
        shutil.rmtree(repository, ignore_errors=True)
        _init(repository, password)
    shutil.rmtree(node.state / "restic-cache", ignore_errors=True)
    for name in ("offsite.json", "offsite-ledger.json"):
        (node.state / name).unlink(missing_ok=True)
    conf = node.conf.read_text().split("[offsite]")[0]
    node.conf.write_text(conf + f"[offsite]\nrepository = {ours_repo}\npassword_file = {password}\n")
    order = ("ours", "plain") if number % 2 == 0 else ("plain", "ours")
    measured = {}
    for stage in STAGES:
        if stage != "first":
            grow()
        for variant in order:
            measured[(stage, variant)] = (_ours(node) if variant == "ours"
                                          else _plain(node, plain_repo, password, plain_cache))
    for repository in (ours_repo, plain_repo, plain_cache):
        shutil.rmtree(repository, ignore_errors=True)
    return measured


def run(quick: bool = False) -> dict:
    devices, rounds = (2, 2) if quick else (4, 3)
    chunks, chunk_bytes, rows = (2, 4 << 20, 2000) if quick else (6, 16 << 20, 20000)
    with Work("offsite") as work, Lab(lab_name("offsite"), devices) as lab:
        for device in lab.devices:
            lab.populate(device, experiments=2, db_rows=rows, video_chunks=chunks, chunk_bytes=chunk_bytes, mp4=False)
        node = fresh_node(lab, work / "node")
        for _ in range(2):                     # the second pass removes the raw copies of finished databases
            run_cli(node)
        password = work / "password"
        password.write_text(PASSWORD + "\n")
        password.chmod(0o600)

        def grow():
            for device in lab.devices:
                lab.populate(device, experiments=1, db_rows=rows // 4, video_chunks=1, chunk_bytes=chunk_bytes,
                             mp4=False)
            run_cli(node)

        results = [_round(n, node, work, password, grow) for n in range(rounds)]
    res = {"devices": devices, "rounds": rounds, "raw": [{f"{s} {v}": m for (s, v), m in r.items()} for r in results]}
    table = []
    for stage in STAGES:
        ratios = [r[(stage, "ours")]["wall"] / r[(stage, "plain")]["wall"] for r in results]
        cpu = [r[(stage, "ours")]["cpu"] / max(r[(stage, "plain")]["cpu"], 1e-6) for r in results]
        ours = statistics.median(r[(stage, "ours")]["wall"] for r in results)
        plain = statistics.median(r[(stage, "plain")]["wall"] for r in results)
        ours_cpu = statistics.median(r[(stage, "ours")]["cpu"] for r in results)
        plain_cpu = statistics.median(r[(stage, "plain")]["cpu"] for r in results)
        read = results[-1][(stage, "ours")]["read"], results[-1][(stage, "plain")]["read"]
        added = results[-1][(stage, "ours")]["added"], results[-1][(stage, "plain")]["added"]
        res[stage] = {"ours_s": round(ours, 3), "plain_s": round(plain, 3),
                      "ratio_median": round(statistics.median(ratios), 3),
                      "ratio_range": [round(min(ratios), 3), round(max(ratios), 3)],
                      "ours_cpu_s": round(ours_cpu, 3), "plain_cpu_s": round(plain_cpu, 3),
                      "cpu_ratio_range": [round(min(cpu), 3), round(max(cpu), 3)],
                      "bytes_read": {"ours": read[0], "plain": read[1]},
                      "bytes_added": {"ours": added[0], "plain": added[1]}}
        r = res[stage]
        table.append(row("9 second copy", f"{MEASURES[stage]}: vs plain restic backup, wall", r["ours_s"],
                         r["plain_s"], target=None if stage == "retention" else TARGET,
                         note="per-round ratios %.2f-%.2f, median %.2f" % (*r["ratio_range"], r["ratio_median"])))
        table.append(row("9 second copy", f"{MEASURES[stage]}: node CPU (command + restic)", r["ours_cpu_s"],
                         r["plain_cpu_s"], note="per-round ratios %.2f-%.2f; read %d vs %d bytes" % (
                             *r["cpu_ratio_range"], read[0], read[1])))
    res["rows"] = table
    return res


if __name__ == "__main__":
    import sys
    print(json.dumps(run("--quick" in sys.argv), indent=1, default=str))
