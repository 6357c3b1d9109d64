"""A status service process for the web tests: bound, or socket-activated by systemd-socket-activate."""
import http.client
import json
import os
import signal
import socket
import subprocess
import time

from tests.fixtures.status import add_history_device, build, example_pass
from tests.fixtures.status import write_json

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PYTHON = "/usr/bin/python3"


def documents(name):
    """Status and history documents written by the real store from an example pass:
    "done" (two devices, the second failed) and "running" (both still copying)."""
    status, history = build(example_pass(running=name == "running"), finish=name != "running")
    return status, add_history_device(history)


def have_ipv6():
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


def free_port(host="127.0.0.1"):
    fam = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(fam, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


class Service:
    """A server process; ``requests`` go to ``host``/``port``."""

    def __init__(self, tmp, mode="bind", listen=None, idle_exit=60.0, status=None, history=None,
                 host="127.0.0.1"):
        self.tmp = tmp
        self.status_file = os.path.join(tmp, "status.json")
        self.history_file = os.path.join(tmp, "history.json")
        if status:
            write_json(self.status_file, documents(status)[0])
        if history:
            write_json(self.history_file, documents(history)[1])
        self.host = host
        self.port = free_port(host if host != "::" else "::1")
        self.port2 = free_port() if mode == "two" else None
        code = ("import sys; from ethoscope_rsync.web.adapter import serve; sys.exit(serve(%r, %r, listen=%r, "
                "idle_exit=%r, cors_origin='*', stale_after=86400.0, horizon_days=14.0))"
                % (self.status_file, self.history_file, listen or "127.0.0.1:%d" % self.port, idle_exit))
        cmd = [PYTHON, "-c", code]
        if mode == "v4":
            cmd = ["systemd-socket-activate", "-l", "127.0.0.1:%d" % self.port] + cmd
        elif mode == "v6":
            cmd = ["systemd-socket-activate", "-l", "[::]:%d" % self.port] + cmd
        elif mode == "port":
            cmd = ["systemd-socket-activate", "-l", "%d" % self.port] + cmd
        elif mode == "two":
            cmd = ["systemd-socket-activate", "-l", "127.0.0.1:%d" % self.port,
                   "-l", "127.0.0.1:%d" % self.port2] + cmd
        env = dict(os.environ, PYTHONPATH=ROOT)
        env.pop("NOTIFY_SOCKET", None)
        self.stderr_path = os.path.join(tmp, "stderr-%d" % self.port)
        self.stderr = open(self.stderr_path, "wb")
        self.proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=self.stderr)
        self.mode = mode
        self._wait_listening()

    def _wait_listening(self, timeout=10.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                return
            for table in ("/proc/net/tcp", "/proc/net/tcp6"):
                try:
                    with open(table) as f:
                        for line in f.readlines()[1:]:
                            fields = line.split()
                            if fields[1].endswith(":%04X" % self.port) and fields[3] == "0A":
                                return
                except FileNotFoundError:
                    pass
            time.sleep(0.01)
        raise AssertionError("server did not listen within %ss" % timeout)

    def request(self, method="GET", path="/", headers=None, host=None, timeout=10, port=None):
        conn = http.client.HTTPConnection(host or self.host, port or self.port, timeout=timeout)
        try:
            conn.request(method, path, headers=headers or {})
            resp = conn.getresponse()
            return resp.status, dict(resp.getheaders()), resp.read()
        finally:
            conn.close()

    def json(self, path="/", **kw):
        status, headers, body = self.request(path=path, **kw)
        assert status == 200, (status, body)
        assert headers["Content-Type"].startswith("application/json")
        return json.loads(body)

    def connect(self, timeout=10):
        return socket.create_connection((self.host, self.port), timeout=timeout)

    def raw(self, data: bytes, timeout=10) -> bytes:
        """Send ``data`` on a new connection, return everything received until the server closes."""
        chunks = []
        with self.connect(timeout) as c:
            try:
                c.sendall(data)
                while True:
                    b = c.recv(1 << 16)
                    if not b:
                        break
                    chunks.append(b)
            except ConnectionResetError:
                pass
        return b"".join(chunks)

    def log(self):
        with open(self.stderr_path, "rb") as f:
            return f.read().decode(errors="replace")

    def stop(self, timeout=10):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            rc = self.proc.wait()
        self.stderr.close()
        return rc
