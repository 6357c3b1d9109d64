"""The status service over real sockets: bound, socket-activated (IPv4 and dual-stack IPv6)."""
import http.client
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PYTHON = "/usr/bin/python3"
sys.path.insert(0, ROOT)

from bench.status_fixture import add_history_device, build, example_pass  # noqa: E402
from bench.status_service import generate_status, write_json  # noqa: E402


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
        code = ("import sys; from ethoscope_rsync.web import serve; sys.exit(serve(%r, %r, listen=%r, "
                "idle_exit=%r))" % (self.status_file, self.history_file,
                                    listen or "127.0.0.1:%d" % self.port, idle_exit))
        cmd = [PYTHON, "-c", code]
        if mode == "v4":
            cmd = ["systemd-socket-activate", "-l", "127.0.0.1:%d" % self.port] + cmd
        elif mode == "v6":
            cmd = ["systemd-socket-activate", "-l", "[::]:%d" % self.port] + cmd
        elif mode == "port":
            cmd = ["systemd-socket-activate", "-l", "%d" % self.port] + cmd
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

    def request(self, method="GET", path="/", headers=None, host=None, timeout=10):
        conn = http.client.HTTPConnection(host or self.host, self.port, timeout=timeout)
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


@pytest.fixture
def tmp():
    d = tempfile.mkdtemp(prefix="test-web-")
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def services(tmp):
    made = []

    def start(**kw):
        s = Service(tmp, **kw)
        made.append(s)
        return s

    yield start
    for s in made:
        s.stop()


# ---------------------------------------------------------------- shapes and methods

def test_json_shapes(services):
    s = services(status="done", history="done")
    root = s.json("/", headers={"Accept": "*/*"})
    assert set(root) == {"status", "last_backup"}
    assert root["status"] == "idle" and re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", root["last_backup"])
    doc = s.json("/status")
    assert len(doc["devices"]) == 3
    for dev in doc["devices"].values():
        for key in ("name", "status", "started", "ended", "processing", "count", "progress", "synced",
                    "transfer_details", "stale"):
            assert key in dev
        assert {"results", "videos"} <= set(dev["synced"])
    assert set(doc["disk_usage_summary"]) >= {"results", "videos", "combined"}
    one = s.json("/status/ETHOSCOPE_002")
    assert one["id"] == "b" * 32
    assert s.json("/status/2")["id"] == one["id"]
    code, headers, body = s.request(path="/status/ETHOSCOPE_099")
    assert code == 404 and json.loads(body)["error"] == "unknown device"


def test_html_head_cors_405_404(services):
    s = services(status="running")
    code, headers, body = s.request(path="/", headers={
        "Accept": "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"})
    assert code == 200 and headers["Content-Type"].startswith("text/html")
    assert b'http-equiv="refresh"' in body and b"<script>" not in body
    code, headers, _ = s.request(path="/", headers={"Accept": "*/*"})  # curl
    assert headers["Content-Type"].startswith("application/json")
    assert headers["Access-Control-Allow-Origin"] == "*"
    code, get_headers, get_body = s.request(path="/status")
    code, headers, body = s.request("HEAD", "/status")
    assert code == 200 and body == b""
    assert headers["Content-Length"] == get_headers["Content-Length"] == str(len(get_body))
    for method in ("POST", "PUT", "DELETE", "PATCH"):
        code, headers, body = s.request(method, "/status")
        assert code == 405, method
        assert "GET" in headers["Allow"] and "POST" not in headers["Allow"]
        assert json.loads(body)["status"] == 405
    for path in ("/nope", "/status/a/b", "/metrics/x", "/%2e%2e/etc/passwd"):
        code, headers, body = s.request(path=path)
        assert code == 404, path
        assert json.loads(body)["status"] == 404
    code, headers, body = s.request(path="/metrics")
    assert code == 200 and headers["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
    # nothing above changed the file
    with open(s.status_file, "rb") as b:
        assert json.loads(b.read()) == documents("running")[0]


def test_garbage_file_gives_503_without_traceback(services):
    s = services()
    with open(s.status_file, "w") as f:
        f.write('{"devices": {"x": ')
    code, headers, body = s.request(path="/status")
    assert code == 503
    doc = json.loads(body)
    assert "status file" in doc["error"] and "invalid JSON" in doc["detail"]
    assert s.request(path="/")[0] == 503
    assert b"Traceback" not in body
    os.chmod(s.status_file, 0o000)
    if os.geteuid() != 0:
        assert s.request(path="/status")[0] == 503
    os.chmod(s.status_file, 0o644)
    write_json(s.status_file, [1, 2])
    assert s.request(path="/status")[0] == 503
    assert s.stop() == 0
    log = s.log()
    assert "Traceback" not in log
    assert log.count("503") >= 3


def test_missing_files_no_runs_yet(services):
    s = services()
    assert s.json("/") == {"status": "idle", "last_backup": ""}
    doc = s.json("/status")
    assert doc["devices"] == {} and doc["message"] == "no backup pass yet"
    code, _, body = s.request(path="/metrics")
    assert code == 200 and b"ethoscope_backup_stale_devices 0" in body


def test_after_reboot_history_only(services):
    s = services(history="done")
    root = s.json("/")
    assert root["last_backup"] != ""
    assert len(s.json("/status")["devices"]) == 3


# ---------------------------------------------------------------- listening and lifecycle

def test_port_in_use_exit_2_one_line(tmp):
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", 0))
        blocker.listen(1)
        port = blocker.getsockname()[1]
        code = ("import sys; from ethoscope_rsync.web import serve; "
                "sys.exit(serve('/nonexistent/s.json', None, listen='127.0.0.1:%d'))" % port)
        p = subprocess.run([PYTHON, "-c", code], env=dict(os.environ, PYTHONPATH=ROOT),
                           capture_output=True, text=True, timeout=30)
    assert p.returncode == 2
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and "in use" in lines[0] and str(port) in lines[0], p.stderr


@pytest.mark.parametrize("mode", ["v4", "v6", "port", "bind"])
def test_client_addresses(services, mode):
    if mode in ("v6", "port") and not have_ipv6():
        pytest.skip("no IPv6")
    s = services(mode=mode, status="done")
    assert s.json("/")["status"] == "idle"
    s.request(path="/missing-v4", host="127.0.0.1")
    if mode in ("v6", "port"):
        assert s.json("/", host="::1")["status"] == "idle"
        s.request(path="/missing-v6", host="::1")
    assert s.stop() == 0
    log = s.log()
    assert re.search(r"^\S+ serve: 127\.0\.0\.1 GET /missing-v4: 404", log, re.M), log
    if mode in ("v6", "port"):
        assert re.search(r"serve: ::1 GET /missing-v6: 404", log), log
        assert "(socket-activated)" in log and "[::]" in log
    elif mode == "v4":
        assert "127.0.0.1:%d (socket-activated)" % s.port in log
    else:
        assert "(bound)" in log


def test_idle_exit(services):
    s = services(mode="v4", idle_exit=1.0, status="done")
    assert s.json("/")["status"] == "idle"
    rc = s.proc.wait(30)
    assert rc == 0
    assert "idle" in s.log()


def _serve_on_inherited_socket(tmp, sock, idle_exit):
    """Start serve() with ``sock`` as fd 3 and LISTEN_PID = the child's pid (what systemd does)."""
    code = ("import os, sys; os.environ['LISTEN_PID'] = str(os.getpid()); os.environ['LISTEN_FDS'] = '1'; "
            "from ethoscope_rsync.web import serve; "
            "r = serve(%r, None, idle_exit=%r); "
            "assert 'LISTEN_PID' not in os.environ; sys.exit(r)"
            % (os.path.join(tmp, "none.json"), idle_exit))

    def child_setup():
        os.dup2(sock.fileno(), 3)
        os.set_inheritable(3, True)

    return subprocess.Popen([PYTHON, "-c", code], env=dict(os.environ, PYTHONPATH=ROOT),
                            preexec_fn=child_setup, close_fds=False, stderr=subprocess.PIPE)


@pytest.mark.parametrize("how", ["sigterm", "idle"])
def test_stop_does_not_touch_the_socket(tmp, how):
    """After SIGTERM or idle exit nothing connects to the (systemd-owned) listening socket."""
    fam, addr = (socket.AF_INET6, "::1") if have_ipv6() else (socket.AF_INET, "127.0.0.1")
    with socket.socket(fam, socket.SOCK_STREAM) as sock:
        sock.bind((addr, 0))
        sock.listen(16)
        port = sock.getsockname()[1]
        p = _serve_on_inherited_socket(tmp, sock, 1.0 if how == "idle" else 0)
        conn = http.client.HTTPConnection(addr, port, timeout=10)
        conn.request("GET", "/")
        assert json.loads(conn.getresponse().read()) == {"status": "idle", "last_backup": ""}
        conn.close()
        if how == "sigterm":
            p.send_signal(signal.SIGTERM)
        _, err = p.communicate(timeout=30)
        assert p.returncode == 0, err
        sock.setblocking(False)
        with pytest.raises(BlockingIOError):
            sock.accept()  # a probe connection would be waiting here


def test_listen_pid_for_another_process_is_ignored(tmp):
    port = free_port()
    code = ("import os, sys; os.environ['LISTEN_PID'] = '1'; os.environ['LISTEN_FDS'] = '1'; "
            "from ethoscope_rsync.web import serve; sys.exit(serve(%r, None, listen='127.0.0.1:%d', idle_exit=0.5))"
            % (os.path.join(tmp, "none.json"), port))
    p = subprocess.run([PYTHON, "-c", code], env=dict(os.environ, PYTHONPATH=ROOT), capture_output=True,
                       text=True, timeout=30)
    assert p.returncode == 0, p.stderr
    assert "127.0.0.1:%d (bound)" % port in p.stderr


# ---------------------------------------------------------------- concurrency

def test_concurrent_readers_during_atomic_rewrites(services):
    s = services()
    status, history = generate_status(20, running=True)
    write_json(s.status_file, status)
    stop = threading.Event()
    failures, counts = [], [0]

    def writer():
        for i in range(300):
            status["run"]["message"] = "rewrite %d" % i
            status["generated"] = time.time()
            write_json(s.status_file, status)
        stop.set()

    def reader():
        conn = http.client.HTTPConnection("127.0.0.1", s.port, timeout=10)
        while not stop.is_set():
            conn.request("GET", "/status")
            r = conn.getresponse()
            body = r.read()
            try:
                doc = json.loads(body)
                assert r.status == 200 and len(doc["devices"]) == 20
                counts[0] += 1
            except Exception as exc:  # noqa: BLE001
                failures.append((r.status, repr(exc), body[:200]))
        conn.close()

    readers = [threading.Thread(target=reader) for _ in range(6)]
    for t in readers:
        t.start()
    w = threading.Thread(target=writer)
    w.start()
    w.join(120)
    for t in readers:
        t.join(60)
    assert not failures, failures[:3]
    assert counts[0] > 20


# ---------------------------------------------------------------- external checkers

def test_promtool_accepts_metrics(services):
    s = services(status="running", history="done")
    code, _, body = s.request(path="/metrics")
    assert code == 200
    p = subprocess.run(["promtool", "check", "metrics"], input=body, capture_output=True, timeout=60)
    assert p.returncode == 0, (p.stdout, p.stderr)


CHROMIUM = ["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
            "--window-size=1200,800"]


def test_chromium_renders_page(services, tmp):
    s = services(status="done", history="done")
    url = "http://127.0.0.1:%d/" % s.port
    shot = os.path.join(tmp, "page.png")
    for args in (["--screenshot=" + shot], ["--dump-dom"]):
        profile = tempfile.mkdtemp(prefix="chromium-", dir=tmp)
        p = subprocess.run(CHROMIUM + ["--user-data-dir=" + profile] + args + [url],
                           capture_output=True, timeout=120)
        if args[0] == "--dump-dom":
            dom = p.stdout.decode(errors="replace")
    assert os.path.exists(shot) and os.path.getsize(shot) > 10000
    with open(shot, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    rows = re.findall(r'<tr class="device[^"]*" data-id="([0-9a-f]{32})"', dom)
    assert len(rows) == 3, dom[:2000]
    assert "ETHOSCOPE_001" in dom and "ETHOSCOPE_017" in dom
