"""The connection gate with real sockets and a stand-in for cheroot's workers (no HTTP app).

Waits are bounded (a queue get or a socket read with a timeout), never sleeps that assert timing.
"""
import logging
import queue
import socket
import threading

import pytest

from ethoscope_rsync.web.cheroot_seam import GatedConnection
from ethoscope_rsync.web.gate import Gate, Limits
from ethoscope_rsync.web.gateconn import Head, HeadReader, check_head
from tests.polling import wait_for

WAIT = 10.0


def test_head_reader():
    r = HeadReader()
    r.feed(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    assert r.readline(4) == b"GET " and r.readline() == b"/ HTTP/1.1\r\n"
    assert r.has_data() and r.read() == b"Host: x\r\n\r\n"
    assert not r.has_data() and r.read(10) == b"" and r.readline() == b""
    assert r.bytes_read == 27


NO_COLON = "a header line without a colon"
BAD_NAME = "a header name with whitespace or a character not allowed"


@pytest.mark.parametrize("head, expected", [
    (b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", Head("", False)),
    (b"GET / HTTP/1.1\r\n\r\n", Head("", False)),
    (b"POST / HTTP/1.1\r\nContent-Length: 0\r\n\r\n", Head("", False)),
    (b"POST / HTTP/1.1\r\ncontent-length: 12\r\n\r\n", Head("", True)),
    (b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n", Head("", True)),
    (b"GET / HTTP/1.1\r\nX-Content-Length: 5\r\n\r\n", Head("", False)),
    (b"GET / HTTP/1.1\r\nX-Odd: a:b: c\r\n\r\n", Head("", False)),      # colons in a value are fine
    (b"GET / HTTP/1.1\r\nX-Empty:\r\n\r\n", Head("", False)),
    # RFC 9112 5.1: no whitespace between a field name and its colon (the body length it hid)
    (b"POST / HTTP/1.1\r\nContent-Length : 5\r\n\r\n", Head(BAD_NAME, False)),
    (b"POST / HTTP/1.1\r\nContent-Length\t: 5\r\n\r\n", Head(BAD_NAME, False)),
    (b"GET / HTTP/1.1\r\nHost: x\r\nno colon here\r\n\r\n", Head(NO_COLON, False)),
    (b"GET / HTTP/1.1\r\nHost\r\n\r\n", Head(NO_COLON, False)),
    (b"GET / HTTP/1.1\r\n: empty name\r\n\r\n", Head(BAD_NAME, False)),
    (b"GET / HTTP/1.1\r\nHost: x\r\n folded: line\r\n\r\n", Head(BAD_NAME, False)),   # obs-fold
    (b"GET / HTTP/1.1\r\nX-\x00: a\r\n\r\n", Head(BAD_NAME, False)),
    (b"GET / HTTP/1.1\r\nX-\xe9: a\r\n\r\n", Head(BAD_NAME, False))])
def test_check_head(head, expected):
    assert check_head(head) == expected


class Server:
    """What the gate needs of cheroot's workers: process_conn, error_log (and a listening socket)."""

    peercreds_enabled = peercreds_resolve_enabled = False

    def __init__(self):
        self.socket = socket.create_server(("127.0.0.1", 0))
        self.conns = queue.Queue()
        self.errors = []

    def process_conn(self, conn):
        self.conns.put(conn)

    def error_log(self, msg="", level=20, traceback=False):
        self.errors.append(msg)


@pytest.fixture
def gate():
    made = []

    def start(**limits):
        server = Server()
        g = Gate(server, GatedConnection, [server.socket], Limits(**limits))
        thread = threading.Thread(target=g.run, args=(0.05,), daemon=True)
        thread.start()
        made.append((server, g, thread))
        return server, g

    yield start
    for server, g, thread in made:
        g.stop()
        thread.join(WAIT)
        g.close()
        server.socket.close()


def client(server):
    c = socket.create_connection(server.socket.getsockname(), timeout=WAIT)
    return c


def read_all(sock) -> bytes:
    chunks = []
    while True:
        b = sock.recv(65536)
        if not b:
            return b"".join(chunks)
        chunks.append(b)


def test_only_complete_heads_reach_a_worker(gate):
    server, g = gate()
    c = client(server)
    for piece in (b"GET /sta", b"tus HTTP/1.1\r\nHo", b"st: x\r\n"):
        c.sendall(piece)
        with pytest.raises(queue.Empty):
            server.conns.get(timeout=0.2)     # a partial head never reaches the worker queue
    c.sendall(b"\r\n")
    conn = server.conns.get(timeout=WAIT)
    assert conn.rfile.read() == b"GET /status HTTP/1.1\r\nHost: x\r\n\r\n"
    assert conn.remote_addr == "127.0.0.1"


def test_pipelined_requests_one_at_a_time(gate):
    server, g = gate()
    c = client(server)
    c.sendall(b"\r\nGET /a HTTP/1.1\r\n\r\nGET /b HTTP/1.1\r\n\r\nGET /c HT")
    conn = server.conns.get(timeout=WAIT)
    assert conn.rfile.read() == b"GET /a HTTP/1.1\r\n\r\n"
    with pytest.raises(queue.Empty):
        server.conns.get(timeout=0.2)         # the next one waits until this one is answered
    g.put(conn)
    assert server.conns.get(timeout=WAIT).rfile.read() == b"GET /b HTTP/1.1\r\n\r\n"
    g.put(conn)
    c.sendall(b"TP/1.1\r\n\r\n")
    assert server.conns.get(timeout=WAIT).rfile.read() == b"GET /c HTTP/1.1\r\n\r\n"


@pytest.mark.parametrize("request_bytes, status", [
    (b"GET /" + b"0" * 300000 + b" HTTP/1.1\r\n\r\n", b"414"),
    (b"GET / HTTP/1.1\r\n" + b"X-A: " + b"a" * 20000 + b"\r\n\r\n", b"431"),
    (b"GET / HTTP/1.1\r\n" + b"X-A: a\r\n" * 3000 + b"\r\n", b"431")], ids=["line", "header", "headers"])
def test_oversized_heads_refused_and_the_answer_arrives(gate, request_bytes, status):
    server, g = gate()
    c = client(server)
    sender = threading.Thread(target=lambda: _send_ignoring_reset(c, request_bytes), daemon=True)
    sender.start()
    answer = read_all(c)
    sender.join(WAIT)
    assert answer.startswith(b"HTTP/1.1 " + status) and b"Connection: close" in answer
    assert b"\r\nX-Content-Type-Options: nosniff\r\n" in answer
    assert server.conns.empty()


def test_malformed_header_refused_400_and_never_reaches_a_worker(gate, caplog):
    server, g = gate()
    c = client(server)
    c.sendall(b"POST /status HTTP/1.1\r\nHost: x\r\nContent-Length : 5\r\n\r\nhello")
    answer = read_all(c)
    assert answer.startswith(b"HTTP/1.1 400 Bad Request\r\n") and b"Connection: close" in answer
    assert b"\r\nX-Content-Type-Options: nosniff\r\n" in answer
    assert answer.endswith(b'{"error": "bad request", "status": 400}')
    assert server.conns.empty()
    assert "refused a request from 127.0.0.1: 400, " + BAD_NAME in caplog.text


def test_malformed_pipelined_request_refused_after_the_good_one(gate):
    """The second request of a pipeline is checked when a worker gives the connection back."""
    server, g = gate()
    c = client(server)
    c.sendall(b"GET /a HTTP/1.1\r\n\r\nGET /b HTTP/1.1\r\nno colon\r\n\r\n")
    conn = server.conns.get(timeout=WAIT)
    assert conn.rfile.read() == b"GET /a HTTP/1.1\r\n\r\n"
    conn.wfile.write(b"answer a;")
    g.put(conn)
    assert read_all(c).startswith(b"answer a;HTTP/1.1 400 ")
    assert server.conns.empty()


def _send_ignoring_reset(sock, data):
    try:
        sock.sendall(data)
    except OSError:
        pass


def test_slow_head_gets_408(gate, caplog):
    server, g = gate(head_timeout=0.3)
    c = client(server)
    c.sendall(b"GET / HTTP/1.1\r\n")
    assert read_all(c).startswith(b"HTTP/1.1 408 ")
    assert server.conns.empty()
    assert "refused a request from 127.0.0.1: 408, its request was not complete in time" in caplog.text


def test_idle_connection_closed(gate):
    server, g = gate(idle_timeout=0.3)
    c = client(server)
    assert read_all(c) == b""


def test_answer_tail_sent_by_the_gate(gate):
    """A worker writes more than the client takes; the gate sends the rest, then closes."""
    server, g = gate()
    c = client(server)
    c.sendall(b"GET / HTTP/1.1\r\n\r\n")
    conn = server.conns.get(timeout=WAIT)
    big = bytes(range(256)) * 40000           # 10 MB: more than the socket buffers take unread
    conn.wfile.write(b"head:")
    conn.wfile.write(big)
    assert conn.wfile.tail                    # the worker did not block on it
    conn.close()
    assert read_all(c) == b"head:" + big


def test_answer_never_read_is_dropped(gate):
    server, g = gate(write_timeout=0.3)
    c = client(server)
    c.sendall(b"GET / HTTP/1.1\r\n\r\n")
    conn = server.conns.get(timeout=WAIT)
    conn.wfile.write(bytes(10 << 20))
    g.put(conn)                               # keep-alive: it would wait for another request
    wait_for(lambda: conn.socket.fileno() == -1, WAIT, 0.05, "the unread answer to be dropped")
    assert len(read_all(c)) < 10 << 20        # what the kernel had taken, then the end


def test_oldest_waiting_connection_makes_room(gate, caplog):
    server, g = gate(connection_limit=2)
    first, second = client(server), client(server)
    second.sendall(b"GET /")                  # started, so not idle: still evictable, but younger
    third = client(server)
    assert read_all(first) == b""             # evicted
    assert "too many connections: dropped the longest-waiting one, from 127.0.0.1" in caplog.text
    third.sendall(b"GET / HTTP/1.1\r\n\r\n")
    assert server.conns.get(timeout=WAIT).rfile.read() == b"GET / HTTP/1.1\r\n\r\n"


def test_stop_leaves_the_listening_socket_alone(gate):
    server, g = gate()
    g.stop()
    assert server.socket.fileno() >= 0
    logging.getLogger(__name__).debug("stopped")


def test_documented_limits_are_the_defaults():
    from pathlib import Path
    page = (Path(__file__).resolve().parents[3] / "man" / "ethoscope-backup.8").read_text()
    text = " ".join(page.split())
    lim = Limits()
    assert "request line of at most %d KiB" % (lim.max_line // 1024) in text
    assert "request head of at most %d KiB" % (lim.max_head // 1024) in text
    assert "within %g seconds of its first byte" % lim.head_timeout in text
    assert "idle for %g seconds" % lim.idle_timeout in text
    assert "within %g seconds is dropped" % lim.write_timeout in text
    assert "beyond %d connections" % lim.connection_limit in text
