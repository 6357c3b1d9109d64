"""The status service over real sockets: bound, socket-activated (IPv4 and dual-stack IPv6)."""
import http.client
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time

import pytest

from tests.fixtures.status import generate_status, write_json
from tests.integration.status_service import PYTHON, ROOT, Service, documents, free_port, have_ipv6


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
    assert set(root) == {"status", "last_backup", "last_pass", "verdict"}      # the upstream keys, and issue 22's
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
    assert code == 404 and json.loads(body) == {"error": "unknown device", "status": 404}


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
    assert code == 503 and headers["X-Content-Type-Options"] == "nosniff"
    # neither the file's path nor the parser's words reach the client: the journal has them
    assert json.loads(body) == {"error": "status file unreadable or invalid", "status": 503}
    assert s.tmp.encode() not in body and b"JSON" not in body
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
    assert "GET /status: 503 status file unreadable or invalid (%s: invalid JSON: " % s.status_file in log


def test_missing_files_no_runs_yet(services):
    s = services()
    root = s.json("/")
    assert (root["status"], root["last_backup"], root["verdict"]["level"]) == ("idle", "", "unknown")
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
        code = ("import sys; from ethoscope_rsync.web.adapter import serve; "
                "sys.exit(serve('/nonexistent/s.json', None, listen='127.0.0.1:%d', idle_exit=300.0, "
                "cors_origin='*', stale_after=86400.0, horizon_days=14.0))" % port)
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
            "from ethoscope_rsync.web.adapter import serve; "
            "r = serve(%r, None, listen=None, idle_exit=%r, cors_origin='*', stale_after=86400.0, horizon_days=14.0); "
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
        root = json.loads(conn.getresponse().read())
        assert (root["status"], root["last_backup"]) == ("idle", "")
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
            "from ethoscope_rsync.web.adapter import serve; sys.exit(serve(%r, None, listen='127.0.0.1:%d', "
            "idle_exit=0.5, cors_origin='*', stale_after=86400.0, horizon_days=14.0))"
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


# ---------------------------------------------------------------- hostile clients

def _big_status(s, devices=100):
    status, history = generate_status(devices)
    write_json(s.status_file, status)
    write_json(s.history_file, history)


def test_slow_and_idle_clients_cannot_starve_the_service(services):
    """64 slow-loris connections (a partial request, a byte now and then) and 64 idle ones are held
    by the connection gate, not by the worker threads: a normal client is still answered."""
    s = services(status="done", history="done")
    slow, idle = [], []
    try:
        for _ in range(64):
            c = s.connect()
            c.sendall(b"GET /status HTTP/1.1\r\nHost: x\r\nX-Slow: ")
            slow.append(c)
            idle.append(s.connect())
        for c in slow:
            c.sendall(b"a")
        for _ in range(5):   # the client's own timeout bounds the wait
            assert len(s.json("/status", timeout=10)["devices"]) == 3
        slow[0].settimeout(30)
        assert slow[0].recv(100).startswith(b"HTTP/1.1 408 ")   # a head has a deadline
    finally:
        for c in slow + idle:
            c.close()
    assert s.stop() == 0
    assert "Traceback" not in s.log()


def test_clients_that_do_not_read_cannot_starve_the_service(services):
    s = services()
    _big_status(s)
    hogs = []
    try:
        for _ in range(16):
            c = socket.socket()
            c.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            c.connect((s.host, s.port))
            # 8 answers of 830 KB: more than the server's socket buffer (4 MB at most) takes
            c.sendall(b"GET /status HTTP/1.1\r\nHost: x\r\n\r\n" * 8)   # and never read
            hogs.append(c)
        for _ in range(5):
            code, _, body = s.request(path="/status", timeout=10)
            assert code == 200 and len(json.loads(body)["devices"]) == 100
    finally:
        for c in hogs:
            c.close()


def test_huge_requests_get_clear_answers_while_others_are_served(services):
    s = services(status="done", history="done")
    stop, answers = threading.Event(), []

    def flood():
        while not stop.is_set():
            answers.append(s.raw(b"GET /status/" + b"0" * 300000 + b"x HTTP/1.1\r\nHost: x\r\n\r\n")[:40])

    flooders = [threading.Thread(target=flood) for _ in range(4)]
    for t in flooders:
        t.start()
    try:
        for _ in range(20):
            assert s.request(path="/status", timeout=10)[0] == 200
    finally:
        stop.set()
        for t in flooders:
            t.join(60)
    assert answers and all(a.startswith(b"HTTP/1.1 414 ") for a in answers), set(answers)
    assert s.raw(b"GET / HTTP/1.1\r\nX-Big: " + b"a" * 20000 + b"\r\n\r\n").startswith(b"HTTP/1.1 431 ")
    # keys that made the old key pattern backtrack, or int() give up (a 500)
    for key in ("0" * 8000 + "x", "9" * 5000, "1" * 4301):
        code, _, body = s.request(path="/status/" + key)
        assert code == 404 and json.loads(body)["error"] == "unknown device"
    assert s.request(path="/status/ETHOSCOPE_" + "0" * 7000 + "1")[0] == 404
    assert s.stop() == 0
    log = s.log()
    assert "Traceback" not in log and " 500 " not in log


def test_every_answer_says_nosniff(services):
    """Answers of the app, of the connection gate and of cheroot itself alike."""
    s = services(status="done", history="done")
    etag = s.request(path="/status")[1]["ETag"]
    answers = [s.raw(b"GET %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n%s\r\n" % (path, extra)) for path, extra in (
        (b"/", b""), (b"/status", b""), (b"/metrics", b""), (b"/status/2", b""), (b"/nope", b""),
        (b"/status", b"If-None-Match: " + etag.encode() + b"\r\n"), (b"/", b"Accept: text/html\r\n"))]
    answers += [s.raw(b"DELETE /status HTTP/1.1\r\nConnection: close\r\n\r\n"),
                s.raw(b"OPTIONS /status HTTP/1.1\r\nConnection: close\r\n\r\n"),
                s.raw(b"GET /" + b"a" * 20000 + b" HTTP/1.1\r\n\r\n"),                # the gate: 414
                s.raw(b"GET / HTTP/1.1\r\nX: " + b"a" * 20000 + b"\r\n\r\n"),       # the gate: 431
                s.raw(b"GET / HTTP/1.1\r\nContent-Length : 5\r\n\r\n"),             # the gate: 400
                s.raw(b"GET / HTTP/9.9\r\n\r\n"),                                     # cheroot: 505
                s.raw(b"get / HTTP/1.1\r\n\r\n")]                                     # cheroot: 400
    codes = []
    for answer in answers:
        status_line, headers, _ = _head_and_body(answer)
        codes.append(int(status_line.split()[1]))
        assert headers.get("x-content-type-options") == "nosniff", answer[:300]
    assert codes == [200, 200, 200, 200, 404, 304, 200, 405, 204, 414, 431, 400, 505, 400]
    with s.connect() as slow:                       # the gate's 408
        slow.sendall(b"GET / HTTP/1.1\r\n")
        slow.settimeout(30)
        assert b"\r\nX-Content-Type-Options: nosniff\r\n" in slow.recv(1000)


@pytest.mark.parametrize("bad", [b"Content-Length : 5", b"Content-Length\t: 5", b"no colon at all",
                                 b" folded: line", b": no name"])
def test_a_malformed_header_line_is_400_and_the_service_goes_on(services, bad):
    """RFC 9112: whitespace between a field name and its colon, a line without a colon or a folded
    line is a 400, so a body length no one reads the same way cannot smuggle a second request."""
    s = services(status="done")
    answer = s.raw(b"POST /status HTTP/1.1\r\nHost: x\r\n" + bad + b"\r\n\r\nGET /smuggled HTTP/1.1\r\n\r\n")
    status_line, headers, body = _head_and_body(answer)
    assert status_line == "HTTP/1.1 400 Bad Request" and headers["connection"] == "close"
    assert json.loads(body) == {"error": "bad request", "status": 400}     # one answer, nothing after it
    assert s.json("/")["status"] == "idle"
    assert s.stop() == 0
    log = s.log()
    assert "refused a request from 127.0.0.1: 400, a header" in log and "smuggled" not in log


def test_log_lines_escape_what_clients_send(services):
    s = services()
    s.request(path="/a%0aFAKE:%20forged%20line%0d%1b[2J")
    s.request(path="/status/x%0aFAKE2")
    s.raw(b"GE\x0bT\x85 /x HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert s.stop() == 0
    log = s.log()
    assert "\\x0aFAKE: forged line\\x0d\\x1b[2J" in log and "x\\x0aFAKE2" in log
    assert "GE\\x0bT" in log
    assert not [line for line in log.splitlines() if not line.startswith("ethoscope-backup serve: ")], log


# ---------------------------------------------------------------- a feed that costs the LAN little

def _head_and_body(answer: bytes):
    head, _, body = answer.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    return lines[0], {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}, body


def test_gzip_etag_and_a_few_hundred_bytes_per_unchanged_poll(services):
    s = services()
    _big_status(s)
    ask = b"GET /status HTTP/1.1\r\nHost: x\r\nAccept-Encoding: gzip\r\nConnection: close\r\n"
    status_line, headers, body = _head_and_body(s.raw(ask + b"\r\n"))
    assert status_line == "HTTP/1.1 200 OK" and headers["content-encoding"] == "gzip"
    assert headers["vary"] == "Accept-Encoding" and int(headers["content-length"]) == len(body)
    import gzip
    plain = gzip.decompress(body)
    assert len(json.loads(plain)["devices"]) == 100 and len(body) < len(plain) / 10
    poll = ask + b"If-None-Match: " + headers["etag"].encode() + b"\r\n\r\n"
    unchanged = s.raw(poll)
    assert unchanged.startswith(b"HTTP/1.1 304 ") and len(unchanged) < 400, unchanged
    assert len(poll) + len(unchanged) < 600
    _big_status(s, devices=99)
    assert s.raw(poll).startswith(b"HTTP/1.1 200 ")


def test_several_activated_sockets(services):
    s = services(mode="two", status="done")
    assert s.json("/")["status"] == "idle"
    assert s.json("/", port=s.port2)["status"] == "idle"
    assert s.stop() == 0
    assert "127.0.0.1:%d, 127.0.0.1:%d (socket-activated)" % (s.port, s.port2) in s.log()
