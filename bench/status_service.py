"""Benchmark of the status service against a bare tuned CherryPy and nginx, in the same run.

For a generated 100-device status (``/status`` is ~830 KB of JSON), each server serving the same
bytes (see bench/status_baselines.py), at 16 keep-alive connections (wrk):

- warm ``/status`` (plain), with gzip, and conditional (``If-None-Match`` → 304, plain and gzip:
  the node UI's poll when nothing changed) — requests/s and p99;
- bytes on the wire of an unchanged poll;
- cold start: a new socket-activated process per sample (systemd-socket-activate), from connect
  to the complete first answer; ours both as ``serve()`` and as the real ``ethoscope-backup serve``;
- resident memory after the warm runs;
- under attack (bench/status_load.py: 64 slow-loris connections and 4 clients flooding 300 KB
  request lines): a normal client's p99 against its quiet figure.

Every figure is printed with its baseline, the ratio and the target.
Run: ``/usr/bin/python3 -m bench.status_service [--quick]``.

Measured 2026-12-01 on the development machine (2-core Intel Xeon VM, Debian 12, Python 3.11,
cheroot 9.0.0, CherryPy 18.8.0, nginx 1.22.1, wrk 4.1.0; load average 1.0 before, 3.0 after),
100 devices, 16 connections (in brackets: ours / bare CherryPy):

==================================================  =========  ===========  ======  =========
measure                                             ours       bare CP      nginx   target
==================================================  =========  ===========  ======  =========
warm /status req/s                                  2159       639 (3.4)    6136    >= 1200
warm /status p99 ms                                 15.3       66.6         5.7     <= 20
warm /status, gzip req/s                            3600       339 (10.6)   74672
conditional /status (304) req/s                     3957       727 (5.4)    98146   >= 2400
conditional /status (304) p99 ms                    7.7        64.7         2.9
unchanged poll, bytes both ways                     333        302          306     <= 600
cold first answer ms (serve() / the real CLI)       126 / 142  99           24      <= 200
RSS MB after the warm runs (serve() / the CLI)      32.1/32.8  46.1         11.1    <= 35
normal client p99 ms, quiet -> attacked             4.4 -> 4.8 23.1 -> none answered  <= 2x
==================================================  =========  ===========  ======  =========

Under attack (64 slow-loris connections and 300 KB request lines at gigabit pace, all 3,755
answered 414) ours answered 28,086 normal requests in 8 s; the bare CherryPy answered none.
Across three quiet runs conditional GETs were 1.83-2.19x our own warm rate (3,957-4,994 req/s):
on the 304 path CherryPy and cheroot take over half of a worker's time (cProfile), the 830 KB
answer adds only its copy in the kernel. Other engineers' tests share the machine: runs under a
load average of 5-10 missed the p99, cold and attack targets for ours and the baselines alike
(the table prints the load average).
"""
from __future__ import annotations

import gzip
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from bench.status_baselines import PYTHON, cherrypy_command, start_nginx  # noqa: E402
from tests.fixtures.status import generate_status, write_json  # noqa: E402
from bench.status_load import (cold_samples, finish_attack, free_port, get, rss_kb, start_attack, stop,  # noqa: E402
                               tree_rss_kb, wait_listening, wrk)

# Issue 15.3 / 12.4 targets
TARGETS = {"cold_ms": 200.0, "warm_rps": 1200.0, "p99_ms": 20.0, "conditional_rps": 2400.0,
           "rss_mb": 35.0, "attack_p99_ratio": 2.0, "unchanged_poll_bytes": 600}


# ---------------------------------------------------------------- servers

def _env():
    env = dict(os.environ, PYTHONPATH=ROOT)
    env.pop("NOTIFY_SOCKET", None)
    return env


def ours_command(status_file, history_file, listen=None, idle_exit=60.0) -> list:
    code = ("import sys; from ethoscope_rsync.web.adapter import serve; sys.exit(serve(%r, %r, listen=%r, idle_exit=%r, cors_origin='*', stale_after=86400.0, horizon_days=14.0))"
            % (status_file, history_file, listen, idle_exit))
    return [PYTHON, "-c", code]


def cli_command(config_file) -> list:
    """The real service's command line (what ethoscope-backup-status.service runs)."""
    return [PYTHON, "-m", "ethoscope_rsync", "serve", "-c", config_file]


def _start(command) -> subprocess.Popen:
    return subprocess.Popen(command, env=_env(), cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _etag(port, gz) -> str:
    code, fields, _, _ = get(port, headers=[("Accept-Encoding", "gzip")] if gz else [])
    return fields.get("etag", "")


# ---------------------------------------------------------------- the benchmark

def _fixture(d) -> dict:
    f = {"status": os.path.join(d, "status.json"), "history": os.path.join(d, "history.json"),
         "served": os.path.join(d, "served.json"), "config": os.path.join(d, "backup.conf")}
    status, history = generate_status(100)
    write_json(f["status"], status)
    write_json(f["history"], history)
    from ethoscope_rsync.web.adapter import StatusApp  # what ours answers is what the baselines serve
    body = StatusApp(f["status"], f["history"], cors_origin="*", stale_after=86400.0, horizon_days=14.0).respond("GET", "/status", {}).body
    with open(f["served"], "wb") as out:
        out.write(body)
    with open(f["served"] + ".gz", "wb") as out:
        out.write(gzip.compress(body, 6, mtime=0))
    state = os.path.join(d, "state")
    os.mkdir(state)
    shutil.copy(f["history"], os.path.join(state, "history.json"))
    with open(f["config"], "w") as out:
        out.write("[paths]\nstatus_file = %s\nstate_dir = %s\n[status]\nidle_exit = 60\n" % (f["status"], state))
    for path in os.listdir(d):
        os.chmod(os.path.join(d, path), 0o755 if os.path.isdir(os.path.join(d, path)) else 0o644)
    os.chmod(d, 0o755)      # nginx's worker (www-data) reads the served file
    return f


def _warm(port, seconds) -> dict:
    plain, packed = _etag(port, False), _etag(port, True)
    gz = ("Accept-Encoding", "gzip")
    out = {"plain": wrk(port, seconds), "gzip": wrk(port, seconds, headers=[gz]),
           "conditional": wrk(port, seconds, headers=[("If-None-Match", plain)]),
           "conditional_gzip": wrk(port, seconds, headers=[gz, ("If-None-Match", packed)])}
    code, _, _, wire = get(port, headers=[gz, ("If-None-Match", packed)])
    out["unchanged_poll"] = {"status": code, "bytes_both_ways": wire}
    code, _, body, wire = get(port, headers=[gz])
    out["changed_poll"] = {"status": code, "bytes_both_ways": wire}
    return out


def _attack(port, seconds) -> dict:
    gz = [("Accept-Encoding", "gzip")]
    quiet = wrk(port, seconds, connections=4, threads=1, headers=gz)
    attacker = start_attack(port, seconds + 1)
    try:
        attacked = wrk(port, seconds, connections=4, threads=1, headers=gz)
    finally:
        summary = finish_attack(attacker)
    ratio = (round(attacked["p99_ms"] / quiet["p99_ms"], 2) if attacked["p99_ms"] and quiet["p99_ms"]
             else None)     # None: nothing answered under attack
    return {"quiet": quiet, "attacked": attacked, "attacker": summary, "p99_ratio": ratio}


def run(quick: bool = False) -> dict:
    d = tempfile.mkdtemp(prefix="status-bench-")
    seconds, cold_n = (1, 2) if quick else (8, 10)
    procs = []
    try:
        f = _fixture(d)
        res = {"load_average_before": os.getloadavg()[0], "devices": 100,
               "status_bytes": os.path.getsize(f["status"]),
               "response_bytes": os.path.getsize(f["served"]), "gzip_bytes": os.path.getsize(f["served"] + ".gz"),
               "wrk_seconds": seconds, "connections": 16, "targets": TARGETS}

        cold = {"ours": cold_samples(ours_command(f["status"], f["history"]), cold_n, _env()),
                "ours_cli": cold_samples(cli_command(f["config"]), cold_n, _env()),
                "cherrypy": cold_samples(cherrypy_command(0, f["served"]), cold_n, _env())}
        ports = {name: free_port() for name in ("ours", "cherrypy", "nginx", "ours_cli")}
        ours = _start(ours_command(f["status"], f["history"], "127.0.0.1:%d" % ports["ours"], 0))
        bare = _start(cherrypy_command(ports["cherrypy"], f["served"]))
        procs += [ours, bare]
        nginx, nginx_cold = start_nginx(d, ports["nginx"], f["served"])
        procs.append(nginx)
        for name in ("ours", "cherrypy"):
            wait_listening(ports[name])
            get(ports[name])
        warm = {name: _warm(ports[name], seconds) for name in ("ours", "cherrypy", "nginx")}
        rss = {"ours": rss_kb(ours.pid) / 1024, "cherrypy": rss_kb(bare.pid) / 1024,
               "nginx": tree_rss_kb(nginx.pid) / 1024}
        attack = {name: _attack(ports[name], seconds) for name in ("ours", "cherrypy")}

        cli = _start(cli_command(f["config"]) + ["--listen", "127.0.0.1:%d" % ports["ours_cli"]])
        procs.append(cli)
        wait_listening(ports["ours_cli"])
        wrk(ports["ours_cli"], seconds)
        rss["ours_cli"] = rss_kb(cli.pid) / 1024

        res.update(cold={k: {"median_ms": statistics.median(v), "max_ms": max(v), "samples": v}
                         for k, v in cold.items()},
                   nginx_cold_start_to_first_answer_ms=nginx_cold, warm=warm,
                   rss_mb={k: round(v, 1) for k, v in rss.items()}, attack=attack)
        res["load_average_after"] = os.getloadavg()[0]   # others' work on this machine skews every figure
        _compat(res)
        return res
    finally:
        for p in procs:
            stop(p)
        shutil.rmtree(d, ignore_errors=True)


def _compat(res) -> None:
    """The keys bench/__main__.py reads, and target checks."""
    w = res["warm"]
    res["ours"] = {"cold_ms_median": res["cold"]["ours"]["median_ms"], "rps": w["ours"]["plain"]["rps"],
                   "p99_ms": w["ours"]["plain"]["p99_ms"], "rss_mb": res["rss_mb"]["ours"]}
    res["nginx"] = {"cold_ms_start_to_first_response": res["nginx_cold_start_to_first_answer_ms"],
                    "rps": w["nginx"]["plain"]["rps"], "p99_ms": w["nginx"]["plain"]["p99_ms"],
                    "rss_mb": res["rss_mb"]["nginx"]}
    t = TARGETS
    res["meets_targets"] = {
        "cold_ms": res["cold"]["ours"]["median_ms"] <= t["cold_ms"],
        "warm_rps": w["ours"]["plain"]["rps"] >= t["warm_rps"],
        "p99_ms": w["ours"]["plain"]["p99_ms"] <= t["p99_ms"],
        "conditional_rps": w["ours"]["conditional"]["rps"] >= t["conditional_rps"],
        "conditional_2x_warm": w["ours"]["conditional"]["rps"] >= 2 * w["ours"]["plain"]["rps"],
        "rss_mb": res["rss_mb"]["ours"] <= t["rss_mb"],
        "attack_p99_ratio": (res["attack"]["ours"]["p99_ratio"] or 99) <= t["attack_p99_ratio"],
        "unchanged_poll_bytes": w["ours"]["unchanged_poll"]["bytes_both_ways"] <= t["unchanged_poll_bytes"],
    }


# ---------------------------------------------------------------- the table

def rows(res) -> list:
    """(measure, ours, bare CherryPy, nginx, target) for every figure."""
    w, c, t = res["warm"], res["cold"], TARGETS
    out = []
    for kind, label in (("plain", "warm /status"), ("gzip", "warm /status, gzip"),
                        ("conditional", "conditional /status (304)"),
                        ("conditional_gzip", "conditional /status, gzip (304)")):
        target_rps = {"plain": ">= %d" % t["warm_rps"], "conditional": ">= %d" % t["conditional_rps"]}.get(kind, "")
        out.append((label + " req/s", w["ours"][kind]["rps"], w["cherrypy"][kind]["rps"], w["nginx"][kind]["rps"],
                    target_rps))
        out.append((label + " p99 ms", w["ours"][kind]["p99_ms"], w["cherrypy"][kind]["p99_ms"],
                    w["nginx"][kind]["p99_ms"], "<= %d" % t["p99_ms"] if kind == "plain" else ""))
    out.append(("unchanged poll, bytes both ways", w["ours"]["unchanged_poll"]["bytes_both_ways"],
                w["cherrypy"]["unchanged_poll"]["bytes_both_ways"], w["nginx"]["unchanged_poll"]["bytes_both_ways"],
                "<= %d" % t["unchanged_poll_bytes"]))
    out.append(("changed poll (gzip), bytes both ways", w["ours"]["changed_poll"]["bytes_both_ways"],
                w["cherrypy"]["changed_poll"]["bytes_both_ways"], w["nginx"]["changed_poll"]["bytes_both_ways"], ""))
    out.append(("cold first answer ms (serve())", c["ours"]["median_ms"], c["cherrypy"]["median_ms"],
                res["nginx_cold_start_to_first_answer_ms"], "<= %d" % t["cold_ms"]))
    out.append(("cold first answer ms (ethoscope-backup serve)", c["ours_cli"]["median_ms"],
                c["cherrypy"]["median_ms"], res["nginx_cold_start_to_first_answer_ms"], "<= %d" % t["cold_ms"]))
    out.append(("RSS MB after warm runs (serve())", res["rss_mb"]["ours"], res["rss_mb"]["cherrypy"],
                res["rss_mb"]["nginx"], "<= %d" % t["rss_mb"]))
    out.append(("RSS MB after a warm run (ethoscope-backup serve)", res["rss_mb"]["ours_cli"],
                res["rss_mb"]["cherrypy"], res["rss_mb"]["nginx"], "<= %d" % t["rss_mb"]))
    ours, bare = res["attack"]["ours"], res["attack"]["cherrypy"]
    out.append(("attacked: normal client p99 ms (quiet: ours %s, CherryPy %s)"
                % (ours["quiet"]["p99_ms"], bare["quiet"]["p99_ms"]),
                ours["attacked"]["p99_ms"], bare["attacked"]["p99_ms"], None,
                "<= %g x quiet" % t["attack_p99_ratio"]))
    out.append(("attacked: p99 / quiet p99", ours["p99_ratio"], bare["p99_ratio"], None,
                "<= %g" % t["attack_p99_ratio"]))
    out.append(("attacked: normal requests answered in %ds" % res["wrk_seconds"], ours["attacked"]["answered"],
                bare["attacked"]["answered"], None, ""))
    out.append(("attacked: 300 KB request lines sent (%s)" % ", ".join(
                    "%s %d" % kv for kv in sorted(ours["attacker"]["huge_answers"].items())),
                ours["attacker"]["huge_sent"], bare["attacker"]["huge_sent"], None, "gigabit-LAN pace"))
    return out


def _ratio(a, b):
    return "%.2f" % (a / b) if isinstance(a, (int, float)) and isinstance(b, (int, float)) and b else "-"


def table(res) -> str:
    lines = ["%-58s %9s %9s %7s %9s %7s  %s" % ("measure", "ours", "CherryPy", "ratio", "nginx", "ratio", "target")]
    for measure, ours, bare, nginx, target in rows(res):
        lines.append("%-58s %9s %9s %7s %9s %7s  %s" % (measure, _fmt(ours), _fmt(bare), _ratio(ours, bare),
                                                           _fmt(nginx), _ratio(ours, nginx), target))
    met = res["meets_targets"]
    lines.append("1-minute load average before/after: %.2f/%.2f on %d cores (the benchmark's own share "
                 "is about 2)" % (res["load_average_before"], res["load_average_after"], os.cpu_count()))
    lines.append("targets met: %d of %d; missed: %s" % (sum(met.values()), len(met),
                                                        ", ".join(k for k, v in met.items() if not v) or "none"))
    return "\n".join(lines)


def _fmt(v) -> str:
    return "-" if v is None else ("%.1f" % v if isinstance(v, float) else str(v))


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    res = run(quick="--quick" in argv)
    print(json.dumps(res, indent=2))
    print(table(res))
    return 0 if all(res["meets_targets"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
