"""Load for the status-service benchmark: wrk runs, cold socket-activated starts, memory, attackers.

``python3 -m bench.status_load attack HOST PORT SECONDS`` is the attacker process: 64 slow-loris
connections (a partial request, a byte a second, reopened when the server gives up on them)
and 4 clients sending 300 KB request lines back to back, together at gigabit-LAN speed (on
loopback an unpaced flood is ten times what the LAN can carry, and measures the attacker's own
use of this machine's two cores); it prints ``ready`` once the 64 are open, and a JSON summary
at the end.
"""
from __future__ import annotations

import json
import re
import signal
import socket
import subprocess
import sys
import threading
import time


# ---------------------------------------------------------------- sockets and processes

def free_port(host="127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def raw_exchange(port, request: bytes, timeout=10.0) -> bytes:
    """Send ``request`` on a new connection; everything received until the server closes."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(request)
        chunks = []
        while True:
            b = s.recv(1 << 16)
            if not b:
                return b"".join(chunks)
            chunks.append(b)


def get(port, path="/status", headers=(), timeout=10.0) -> tuple:
    """→ (status code, {lower-case header: value}, body, bytes on the wire both ways)."""
    request = ("GET %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n%s\r\n"
               % (path, "".join("%s: %s\r\n" % h for h in headers))).encode()
    answer = raw_exchange(port, request, timeout)
    head, _, body = answer.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    code = int(lines[0].split(" ", 2)[1]) if lines[0] else 0
    fields = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    return code, fields, body, len(request) + len(answer)


def listening(port) -> bool:
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as f:
            for line in f.readlines()[1:]:
                fields = line.split()
                if fields[1].endswith(":%04X" % port) and fields[3] == "0A":
                    return True
    return False


def wait_listening(port, timeout=10.0) -> None:
    deadline = time.monotonic() + timeout
    while not listening(port):
        if time.monotonic() > deadline:
            raise RuntimeError("nothing listens on port %d after %ss" % (port, timeout))
        time.sleep(0.005)


def stop(proc, timeout=10.0) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def rss_kb(pid) -> int:
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def tree_rss_kb(pid) -> int:
    """VmRSS of pid plus its children (nginx master + worker)."""
    total = rss_kb(pid)
    out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True, text=True).stdout
    return total + sum(rss_kb(int(c)) for c in out.split())


# ---------------------------------------------------------------- measurements

def wrk(port, seconds, connections=16, headers=(), path="/status", threads=2, timeout=5) -> dict:
    cmd = ["wrk", "-t%d" % threads, "-c%d" % connections, "-d%ds" % seconds, "--latency",
           "--timeout", "%ds" % timeout]
    for h in headers:
        cmd += ["-H", "%s: %s" % h]
    out = subprocess.run(cmd + ["http://127.0.0.1:%d%s" % (port, path)], capture_output=True, text=True,
                         timeout=seconds + 60).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    answered = int(re.search(r"(\d+) requests in", out).group(1))
    lat = {p: _ms(re.search(r"\s%s%%\s+([\d.]+\w+)" % p, out).group(1)) for p in ("50", "99")}
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    sock_err = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    return {"rps": round(rps, 1), "answered": answered,
            "p50_ms": round(lat["50"], 2) if answered else None,       # no answer: no latency
            "p99_ms": round(lat["99"], 2) if answered else None,
            "non_2xx_3xx": int(errors.group(1)) if errors else 0,
            "socket_errors": sum(map(int, sock_err.groups())) if sock_err else 0}


def _ms(text) -> float:
    m = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text)
    return float(m.group(1)) * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}[m.group(2)]


def cold_samples(command, n, env=None, cwd=None) -> list:
    """ms from connecting to the complete first ``/status`` answer of a new socket-activated
    process (``command`` is exec'd by systemd-socket-activate on the first connection)."""
    out = []
    for _ in range(n):
        port = free_port()
        # systemd-socket-activate hands its children only the variables named with -E
        passed = ["-E", "PYTHONPATH=" + env["PYTHONPATH"]] if env and env.get("PYTHONPATH") else []
        proc = subprocess.Popen(["systemd-socket-activate", "-l", "127.0.0.1:%d" % port] + passed + command,
                                env=env, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            wait_listening(port)
            t0 = time.perf_counter()
            code, _, body, _ = get(port)
            dt = (time.perf_counter() - t0) * 1000
            if code != 200 or not body.startswith(b"{"):
                raise RuntimeError("cold request answered %s" % code)
            out.append(round(dt, 1))
        finally:
            stop(proc)
    return out


# ---------------------------------------------------------------- the attacker

LAN_BYTES_PER_S = 125e6    # the flood as fast as a gigabit LAN carries it (loopback carries 10x more)


class Attack:
    """Slow-loris connections and a flood of huge request lines against 127.0.0.1:port."""

    def __init__(self, port, slow=64, flooders=4):
        self.port, self.slow, self.flooders = port, slow, flooders
        self.stopped = threading.Event()
        self.opened = self.reopened = self.huge_sent = 0
        self.answers = {}

    def _connect(self):
        c = socket.create_connection(("127.0.0.1", self.port), timeout=30)
        c.setblocking(False)
        c.send(b"GET /status HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        return c

    def slow_loris(self, ready: threading.Event):
        conns = [self._connect() for _ in range(self.slow)]
        self.opened = len(conns)
        ready.set()
        while not self.stopped.wait(1.0):
            for i, c in enumerate(conns):
                try:
                    c.send(b"a")
                except OSError:          # refused (408) or dropped: a fresh one takes its place
                    c.close()
                    conns[i] = self._connect()
                    self.reopened += 1
        for c in conns:
            c.close()

    def flood(self):
        line = b"GET /status/" + b"0" * 300000 + b"x HTTP/1.1\r\nHost: x\r\n\r\n"
        interval = len(line) * self.flooders / LAN_BYTES_PER_S
        due = time.monotonic()
        while not self.stopped.wait(max(0.0, due - time.monotonic())):
            due += interval
            try:
                answer = raw_exchange(self.port, line, timeout=10)[:12].decode("latin-1")
            except OSError as exc:
                answer = type(exc).__name__
            self.huge_sent += 1
            self.answers[answer] = self.answers.get(answer, 0) + 1

    def run(self, seconds) -> dict:
        ready = threading.Event()
        threads = [threading.Thread(target=self.slow_loris, args=(ready,))]
        threads += [threading.Thread(target=self.flood) for _ in range(self.flooders)]
        for t in threads:
            t.start()
        ready.wait(30)
        print("ready", flush=True)
        self.stopped.wait(seconds)
        self.stopped.set()
        for t in threads:
            t.join(30)
        return {"slow_opened": self.opened, "slow_reopened": self.reopened, "huge_sent": self.huge_sent,
                "huge_answers": self.answers}


def start_attack(port, seconds) -> subprocess.Popen:
    """The attacker in its own process (its CPU is not the benchmark's); returns once it is ready."""
    proc = subprocess.Popen([sys.executable, "-m", "bench.status_load", "attack", "127.0.0.1", str(port),
                             str(seconds)], stdout=subprocess.PIPE, text=True,
                            cwd=__file__.rsplit("/bench/", 1)[0])
    if proc.stdout.readline().strip() != "ready":
        raise RuntimeError("attacker did not start")
    return proc


def finish_attack(proc) -> dict:
    out, _ = proc.communicate(timeout=120)
    return json.loads(out.strip().splitlines()[-1])


if __name__ == "__main__" and sys.argv[1:2] == ["attack"]:
    print(json.dumps(Attack(int(sys.argv[3])).run(float(sys.argv[4]))), flush=True)
