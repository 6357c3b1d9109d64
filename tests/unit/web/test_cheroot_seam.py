"""The one place the service touches cheroot, run for real: requests through cheroot's worker pool.

Everything the status service relies on in cheroot (see ethoscope_rsync/web/cheroot_seam.py) is
exercised here with the installed cheroot — a connection handed over with ``process_conn``, the
request parsed from the gate's files, the WSGI app called, the answer written, the connection given
back with ``put_conn`` (kept alive) or ``close`` — so a cheroot that changes any of it fails these
tests with a message naming its version. Waits are bounded (a queue get or a socket read with a
timeout), never sleeps.
"""
import json
import logging
import queue
import socket

import cheroot.server
import pytest

from ethoscope_rsync.web.cheroot_seam import VERSION, GatedConnection, WorkerServer, missing
from ethoscope_rsync.web.gate import Limits
from ethoscope_rsync.web.listen import ServeError
from ethoscope_rsync.web.server import Service

WAIT = 10.0


def expect(condition, what):
    assert condition, "cheroot %s: %s (see ethoscope_rsync/web/cheroot_seam.py)" % (VERSION, what)


class StandInGate:
    """What the workers give back: ("put", conn) for a kept-alive connection, ("release", conn,
    close) when the connection closes itself."""

    def __init__(self, room=True):
        self.back = queue.Queue()
        self.can_add_keepalive_connection = room

    def put(self, conn):
        self.back.put(("put", conn))

    def release(self, conn, close):
        self.back.put(("release", conn, close))


class Seen:
    def __init__(self):
        self.environs = []

    def __call__(self, environ, start_response):
        self.environs.append(environ)
        body = b'{"ok": true}'
        start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body))),
                                  ("ETag", '"x"')])
        return [b"" if environ["REQUEST_METHOD"] == "HEAD" else body]    # as the app answers HEAD


@pytest.fixture
def pool():
    made = []

    def start(room=True, app=None):
        app = app or Seen()
        server = WorkerServer(("127.0.0.1", 8093), app, threads=2, limits=Limits())
        server.gate = StandInGate(room)
        server.start_workers()
        made.append(server)
        return server, app

    yield start
    for server in made:
        server.stop_workers()


def ask(server, head: bytes, remote="10.1.2.3"):
    """Hand ``head`` to the workers as the gate does; → (the connection, the client's end)."""
    ours, theirs = socket.socketpair()
    theirs.settimeout(WAIT)
    conn = GatedConnection(server, ours, server.gate)
    conn.remote_addr, conn.remote_port = remote, 40000
    conn.rfile.feed(head)
    server.process_conn(conn)
    return conn, theirs


def given_back(server, conn):
    back = server.gate.back.get(timeout=WAIT)
    expect(back[1] is conn, "the worker gave back another connection")
    return back


def answer_of(theirs, conn) -> bytes:
    conn.shut()                      # the answer is written by now: read it to its end
    chunks = []
    while True:
        b = theirs.recv(65536)
        if not b:
            return b"".join(chunks)
        chunks.append(b)


def parse(answer: bytes):
    head, _, body = answer.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    return lines[0], {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}, body


def test_this_cheroot_has_everything_used():
    expect(missing() == [], "lacks %s" % missing())


def test_a_cheroot_without_a_part_used_is_refused_naming_its_version(monkeypatch):
    monkeypatch.delattr(cheroot.server.HTTPRequest, "simple_response")      # as a future cheroot might
    assert missing() == ["HTTPRequest.simple_response"]
    with pytest.raises(ServeError) as refused:
        Service(lambda environ, start_response: [], listen="127.0.0.1:0").start()
    assert str(refused.value) == "cheroot %s is not supported: it lacks HTTPRequest.simple_response" % VERSION


def test_a_request_is_answered_by_a_worker_and_the_connection_kept_alive(pool):
    server, app = pool()
    conn, theirs = ask(server, b"GET /status/%C3%A9?format=json&x=%ff HTTP/1.1\r\nHost: node:8093\r\n"
                               b"Accept: application/json\r\nIf-None-Match: \"y\"\r\n\r\n")
    expect(given_back(server, conn) == ("put", conn), "a kept-alive connection did not come back through put_conn")
    status, headers, body = parse(answer_of(theirs, conn))
    expect(status == "HTTP/1.1 200 OK", "status line %r" % status)
    expect(body == b'{"ok": true}' and headers["content-length"] == str(len(body)), "body %r" % body)
    expect(headers["server"] == "ethoscope-backup" and "date" in headers and headers["etag"] == '"x"',
           "headers %r" % headers)
    expect("connection" not in headers, "a kept-alive answer said Connection: %s" % headers.get("connection"))
    (env,) = app.environs
    got = {k: env[k] for k in ("REQUEST_METHOD", "PATH_INFO", "QUERY_STRING", "REMOTE_ADDR", "HTTP_ACCEPT",
                               "HTTP_IF_NONE_MATCH", "SERVER_SOFTWARE", "SERVER_PORT")}
    expect(got == {"REQUEST_METHOD": "GET", "PATH_INFO": "/status/\u00c3\u00a9", "QUERY_STRING": "format=json&x=%ff",
                   "REMOTE_ADDR": "10.1.2.3", "HTTP_ACCEPT": "application/json", "HTTP_IF_NONE_MATCH": '"y"',
                   "SERVER_SOFTWARE": "ethoscope-backup", "SERVER_PORT": "8093"},
           "WSGI environ %r" % got)


@pytest.mark.parametrize("head", [b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n", b"GET / HTTP/1.0\r\n\r\n"])
def test_a_connection_that_closes_goes_back_to_the_gate_closed(pool, head):
    server, _ = pool()
    conn, theirs = ask(server, head)
    expect(given_back(server, conn) == ("release", conn, True), "a closing connection did not come back closed")
    status, headers, _ = parse(answer_of(theirs, conn))
    expect(status.endswith(" 200 OK"), status)


def test_http10_keep_alive_is_kept(pool):
    server, _ = pool()
    conn, theirs = ask(server, b"GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n")
    expect(given_back(server, conn) == ("put", conn), "HTTP/1.0 keep-alive not kept")
    _, headers, _ = parse(answer_of(theirs, conn))
    expect(headers["connection"] == "Keep-Alive" and headers["keep-alive"] == "timeout=15.0", headers)


def test_no_room_for_another_kept_connection_closes_it(pool):
    server, _ = pool(room=False)
    conn, theirs = ask(server, b"GET / HTTP/1.1\r\n\r\n")
    expect(given_back(server, conn) == ("release", conn, True), "can_add_keepalive_connection was not asked")
    _, headers, _ = parse(answer_of(theirs, conn))
    expect(headers["connection"] == "close", headers)


def test_head_keeps_the_length_of_the_body_it_does_not_send(pool):
    server, _ = pool()
    conn, theirs = ask(server, b"HEAD / HTTP/1.1\r\n\r\n")
    given_back(server, conn)
    status, headers, body = parse(answer_of(theirs, conn))
    expect(status.endswith(" 200 OK") and body == b"" and headers["content-length"] == "12", (status, headers, body))


@pytest.mark.parametrize("head, code", [
    (b"GET /x\r\n\r\n", 400),                         # no protocol
    (b"GET /x HTTP/2.0\r\n\r\n", 505),
    (b"get /x HTTP/1.1\r\n\r\n", 400),                # methods are case-sensitive
    (b"GET http://elsewhere/x HTTP/1.1\r\n\r\n", 400),   # not a proxy
    (b"GET x HTTP/1.1\r\n\r\n", 400),
    (b"GET /x#frag HTTP/1.1\r\n\r\n", 400),
    (b"GET /x HTTP/1.1\r\nContent-Length: five\r\n\r\n", 400),
    (b"GET /x HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n", 501)])
def test_cheroots_own_refusals_are_json_with_nosniff_and_close(pool, head, code, caplog):
    server, app = pool()
    with caplog.at_level(logging.WARNING, "ethoscope_rsync.web"):
        conn, theirs = ask(server, head)
        expect(given_back(server, conn) == ("release", conn, True), "a refused request's connection stayed open")
    status, headers, body = parse(answer_of(theirs, conn))
    expect(status.startswith("HTTP/1.1 %d " % code), "%r answered %r" % (head, status))
    expect(headers["content-type"] == "application/json" and headers["x-content-type-options"] == "nosniff"
           and headers["connection"] == "close", headers)
    expect(json.loads(body)["status"] == code and headers["content-length"] == str(len(body)), body)
    expect(app.environs == [], "a refused request reached the app")
    assert "refused a request from 10.1.2.3: %d " % code in caplog.text


def test_the_workers_stop(pool):
    server, _ = pool()
    server.stop_workers()
    expect(server.requests.idle == 0, "workers still running after stop(): %d" % server.requests.idle)
