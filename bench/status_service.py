"""Benchmark of the status service against nginx serving the same JSON.

Measures, for a generated 100-device status.json:
- cold start: socket-activated (systemd-socket-activate), a new process per sample, time from
  connect+request to the complete first response of ``GET /status``;
- warm: requests/s and p99 latency at 16 concurrent keep-alive connections (wrk --latency);
- resident memory (VmRSS) of the server after the warm run;
and the same for nginx (a temp config on another port, one worker), with ratios ours/nginx.

Run: ``/usr/bin/python3 -m bench.status_service [--quick]``.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

PYTHON = "/usr/bin/python3"
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TARGETS = {"cold_ms": 400.0, "warm_rps": 1000.0, "p99_ms": 20.0, "rss_mb": 40.0}


# ---------------------------------------------------------------- fixture generator

def generate_status(n_devices: int = 100, now: float | None = None, running: bool = False,
                    seed: int = 1) -> tuple:
    """A realistic (status, history) pair with ``n_devices`` devices, written by the real store."""
    from bench.status_fixture import build, scripted_pass
    now = time.time() if now is None else now
    return build(scripted_pass(n_devices, now=now, running=running, seed=seed), finish=not running)


def write_json(path, doc):
    tmp = "%s.tmp%d" % (path, os.getpid())
    with open(tmp, "w") as f:
        json.dump(doc, f)
        f.flush()
        os.fsync(f.fileno())
    os.rename(tmp, path)


# ---------------------------------------------------------------- helpers

def free_port(host="127.0.0.1") -> int:
    fam = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(fam, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def http_get(host, port, path="/status", timeout=10.0) -> tuple:
    """One HTTP/1.0-style GET on a fresh connection → (status code, body bytes)."""
    fam = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(fam, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        s.connect((host, port))
        s.sendall(("GET %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n" % path).encode())
        chunks = []
        while True:
            b = s.recv(1 << 16)
            if not b:
                break
            chunks.append(b)
    data = b"".join(chunks)
    head, _, body = data.partition(b"\r\n\r\n")
    code = int(head.split(b" ", 2)[1]) if head else 0
    return code, body


def wait_port(host, port, timeout=10.0):
    deadline = time.monotonic() + timeout
    fam = socket.AF_INET6 if ":" in host else socket.AF_INET
    while time.monotonic() < deadline:
        with socket.socket(fam, socket.SOCK_STREAM) as s:
            s.settimeout(0.5)
            if s.connect_ex((host, port)) == 0:
                return True
        time.sleep(0.01)
    return False


def rss_kb(pid) -> int:
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def tree_rss_kb(pid) -> int:
    """VmRSS of pid plus its children (nginx master + worker)."""
    total = rss_kb(pid)
    try:
        out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True, text=True).stdout
        for c in out.split():
            total += rss_kb(int(c))
    except (OSError, ValueError):
        pass
    return total


def serve_cmd(status_file, history_file, idle_exit=300.0):
    code = ("import sys; from ethoscope_rsync.web import serve; "
            "sys.exit(serve(%r, %r, idle_exit=%r))" % (status_file, history_file, idle_exit))
    return [PYTHON, "-c", code]


def _env():
    env = dict(os.environ)
    env["PYTHONPATH"] = ROOT + (":" + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env.pop("NOTIFY_SOCKET", None)
    return env


def cold_samples(status_file, history_file, n) -> list:
    """ms from first connection to complete /status answer, new socket-activated process each time."""
    out = []
    for _ in range(n):
        port = free_port()
        proc = subprocess.Popen(["systemd-socket-activate", "-l", "127.0.0.1:%d" % port]
                                + serve_cmd(status_file, history_file, idle_exit=30),
                                env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            # systemd-socket-activate listens first, then waits for a connection before exec'ing.
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline and not _listening(port):
                time.sleep(0.005)
            t0 = time.perf_counter()
            code, body = http_get("127.0.0.1", port)
            dt = (time.perf_counter() - t0) * 1000
            if code != 200 or not body.startswith(b"{"):
                raise RuntimeError("cold request failed: %s" % code)
            out.append(dt)
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    return out


def _listening(port) -> bool:
    with open("/proc/net/tcp") as f:
        hexport = ":%04X" % port
        return any(line.split()[1].endswith(hexport) and line.split()[3] == "0A" for line in f.readlines()[1:])


def wrk(url, seconds, connections=16, threads=2) -> dict:
    out = subprocess.run(["wrk", "-t%d" % threads, "-c%d" % connections, "-d%ds" % seconds, "--latency", url],
                         capture_output=True, text=True, timeout=seconds + 60).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    p99 = _ms(re.search(r"\s99%\s+([\d.]+\w+)", out).group(1))
    p50 = _ms(re.search(r"\s50%\s+([\d.]+\w+)", out).group(1))
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    sock_err = re.search(r"Socket errors: (.*)", out)
    return {"rps": round(rps, 1), "p50_ms": round(p50, 2), "p99_ms": round(p99, 2),
            "non_2xx": int(errors.group(1)) if errors else 0,
            "socket_errors": sock_err.group(1) if sock_err else ""}


def _ms(text) -> float:
    m = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text)
    v, unit = float(m.group(1)), m.group(2)
    return v * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}[unit]


NGINX_CONF = """
worker_processes 1;
daemon off;
pid {d}/nginx.pid;
error_log {d}/error.log;
events {{ worker_connections 256; }}
http {{
  access_log off;
  client_body_temp_path {d}/tmp; proxy_temp_path {d}/tmp; fastcgi_temp_path {d}/tmp;
  uwsgi_temp_path {d}/tmp; scgi_temp_path {d}/tmp;
  server {{
    listen 127.0.0.1:{port};
    location = /status {{ default_type application/json; alias {file}; }}
  }}
}}
"""


# ---------------------------------------------------------------- the benchmark

def run(quick: bool = False) -> dict:
    """Measure ours and nginx; returns figures, ratios ours/nginx and target checks."""
    sys.path.insert(0, ROOT)
    d = tempfile.mkdtemp(prefix="status-bench-")
    os.chmod(d, 0o755)  # nginx's worker (www-data) reads the served file
    try:
        status_file, history_file = os.path.join(d, "status.json"), os.path.join(d, "history.json")
        status, history = generate_status(100)
        write_json(status_file, status)
        write_json(history_file, history)
        # nginx serves what we serve at /status (the same rendered document, as a static file)
        from ethoscope_rsync import render
        served = os.path.join(d, "served.json")
        with open(served, "w") as f:
            json.dump(render.status_document(status, history, time.time(), 86400.0), f,
                      separators=(",", ":"))
        os.chmod(served, 0o644)
        seconds = 3 if quick else 10
        cold_n = 3 if quick else 10
        res = {"status_bytes": os.path.getsize(status_file), "status_response_bytes": os.path.getsize(served),
               "devices": 100, "wrk_seconds": seconds, "connections": 16}

        cold = cold_samples(status_file, history_file, cold_n)
        ours = {"cold_ms_median": round(statistics.median(cold), 1), "cold_ms_max": round(max(cold), 1)}
        port = free_port()
        proc = subprocess.Popen([PYTHON, "-c", "import sys; from ethoscope_rsync.web import serve; "
                                 "sys.exit(serve(%r, %r, listen='127.0.0.1:%d', idle_exit=0))"
                                 % (status_file, history_file, port)],
                                env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            wait_port("127.0.0.1", port)
            http_get("127.0.0.1", port)
            ours["rss_mb_idle"] = round(rss_kb(proc.pid) / 1024, 1)
            ours.update(wrk("http://127.0.0.1:%d/status" % port, seconds))
            ours["rss_mb"] = round(rss_kb(proc.pid) / 1024, 1)
            root = wrk("http://127.0.0.1:%d/" % port, max(2, seconds // 2))
            ours["root_rps"], ours["root_p99_ms"] = root["rps"], root["p99_ms"]
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(10)

        nginx = {}
        nport = free_port()
        os.mkdir(os.path.join(d, "tmp"))
        conf = os.path.join(d, "nginx.conf")
        with open(conf, "w") as f:
            f.write(NGINX_CONF.format(d=d, port=nport, file=served))
        t0 = time.perf_counter()
        nproc = subprocess.Popen(["nginx", "-c", conf, "-p", d], stdout=subprocess.DEVNULL,
                                 stderr=subprocess.DEVNULL)
        try:
            wait_port("127.0.0.1", nport)
            code, _ = http_get("127.0.0.1", nport)
            nginx["cold_ms_start_to_first_response"] = round((time.perf_counter() - t0) * 1000, 1)
            if code != 200:
                raise RuntimeError("nginx answered %s" % code)
            nginx.update(wrk("http://127.0.0.1:%d/status" % nport, seconds))
            nginx["rss_mb"] = round(tree_rss_kb(nproc.pid) / 1024, 1)
        finally:
            nproc.send_signal(signal.SIGTERM)
            nproc.wait(10)

        res["ours"], res["nginx"] = ours, nginx
        res["ratios_ours_over_nginx"] = {
            "rps": round(ours["rps"] / nginx["rps"], 3) if nginx.get("rps") else None,
            "p99": round(ours["p99_ms"] / nginx["p99_ms"], 2) if nginx.get("p99_ms") else None,
            "rss": round(ours["rss_mb"] / nginx["rss_mb"], 2) if nginx.get("rss_mb") else None,
        }
        res["targets"] = TARGETS
        res["meets_targets"] = {
            "cold_ms": ours["cold_ms_median"] <= TARGETS["cold_ms"],
            "warm_rps": ours["rps"] >= TARGETS["warm_rps"],
            "p99_ms": ours["p99_ms"] <= TARGETS["p99_ms"],
            "rss_mb": ours["rss_mb"] <= TARGETS["rss_mb"],
        }
        return res
    finally:
        shutil.rmtree(d, ignore_errors=True)


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    res = run(quick="--quick" in argv)
    print(json.dumps(res, indent=2))
    return 0 if all(res["meets_targets"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
