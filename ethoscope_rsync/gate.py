"""The connection gate: worker threads only ever see complete requests, never a slow client.

cheroot hands a new connection straight to a worker thread, which then blocks reading its
request line; with a handful of threads, as many slow-loris clients (a byte every few seconds,
or nothing at all) starve everyone. The :class:`Gate` replaces cheroot's connection manager: one
selector thread owns every connection that is not being answered and reads request heads
without blocking. A connection reaches the worker queue only when its head (request line and
headers, up to the blank line) is complete; the worker reads it from memory and writes without
blocking (:mod:`ethoscope_rsync.gateconn`): what the client does not take at once is left to
the gate to send later. So a worker's time is CPU time only.

Limits (:class:`Limits`): a head must be complete ``head_timeout`` seconds after its first byte
(else 408) and fit ``max_line``/``max_head`` bytes (else 414/431); an idle connection is closed
after ``idle_timeout``, an unsent answer after ``write_timeout``; beyond ``max_connections`` the
longest-waiting connection makes room for the new one. A refused request gets its short answer,
then the connection is drained briefly before closing, so the answer is not lost to a reset.
"""
from __future__ import annotations

import collections
import dataclasses
import selectors
import socket
import threading
import time

from .gateconn import BUSY, DRAIN, FLUSH, WAIT, GatedConnection, declares_body

_ACCEPT, _WAKE = object(), object()


@dataclasses.dataclass(frozen=True)
class Limits:
    head_timeout: float = 5.0      # from the first byte of a request to its blank line
    idle_timeout: float = 15.0     # a connection with no request started
    write_timeout: float = 30.0    # to hand the client an answer it does not read
    drain_timeout: float = 2.0     # reading the rest of a refused request before closing
    max_line: int = 8192           # request line (414 beyond)
    max_head: int = 16384          # request line and headers (431 beyond)
    max_connections: int = 512


def _canned(status: str) -> bytes:
    body = ('{"error":"%s","status":%s}' % (status.split(" ", 1)[1].lower(), status[:3])).encode()
    return (b"HTTP/1.1 %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n"
            b"Connection: close\r\n\r\n" % (status.encode(), len(body))) + body


REFUSALS = {code: _canned(status) for code, status in (
    (408, "408 Request Timeout"), (414, "414 URI Too Long"),
    (431, "431 Request Header Fields Too Large"), (503, "503 Service Unavailable"))}


class Gate:
    """cheroot's connection manager, replaced: ``run``/``stop``/``close``/``put`` as cheroot calls
    them; only the gate's own thread touches the selector (workers hand back via a queue)."""

    def __init__(self, server, limits: Limits = Limits(), listeners=(), clock=time.monotonic):
        self.server, self.limits, self.clock = server, limits, clock
        self._selector = selectors.DefaultSelector()
        self._wake_r, self._wake_w = socket.socketpair()
        for s in (self._wake_r, self._wake_w):
            s.setblocking(False)
        self._back = collections.deque()
        self._conns = set()
        self._stopping = self._closed = False
        self._running = threading.Event()
        self.refused = collections.Counter()
        for listener in listeners or (server.socket,):
            listener.setblocking(False)
            self._selector.register(listener, selectors.EVENT_READ, _ACCEPT)
        self._selector.register(self._wake_r, selectors.EVENT_READ, _WAKE)

    # -- called from worker threads
    @property
    def can_add_keepalive_connection(self) -> bool:
        return len(self._conns) < self.limits.max_connections

    def put(self, conn):
        """cheroot: a keep-alive connection whose answer is written (or queued in its tail)."""
        self.give_back(conn, close=False)

    def give_back(self, conn, close: bool):
        if self._closed:
            conn.shut()
            return
        conn.close_after = conn.close_after or close
        self._back.append(conn)
        try:
            self._wake_w.send(b"x")
        except BlockingIOError:
            pass      # the wake-up socket is full: the gate is awake anyway
        except OSError:
            conn.shut()   # closed meanwhile

    # -- the gate's thread
    def run(self, expiration_interval: float = 0.5):
        self._running.set()
        try:
            last_expiry = self.clock()
            while not self._stopping:
                for key, events in self._selector.select(timeout=expiration_interval):
                    if key.data is _ACCEPT:
                        self._accept(key.fileobj)
                    elif key.data is _WAKE:
                        self._take_back()
                    else:
                        self._ready(key.data, events)
                now = self.clock()
                if now - last_expiry >= expiration_interval:
                    last_expiry = now
                    self._expire(now)
        finally:
            self._running.clear()

    def _accept(self, listener):
        for _ in range(64):
            try:
                sock, addr = listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:     # EMFILE, ECONNABORTED...: free a slot, the next round retries
                self.server.error_log("accept: %s" % exc, level=30)
                self._evict_oldest()
                return
            sock.setblocking(False)
            if len(self._conns) >= self.limits.max_connections:
                self._evict_oldest()
            conn = GatedConnection(self.server, sock, self)
            if isinstance(addr, tuple):
                conn.remote_addr, conn.remote_port = addr[0], addr[1]
            self._conns.add(conn)
            self._wait(conn, self.clock())

    def _evict_oldest(self):
        waiting = [c for c in self._conns if c.state != BUSY]
        if waiting:
            self.refused["evicted"] += 1
            self._drop(min(waiting, key=lambda c: c.since))

    def _take_back(self):
        try:
            while self._wake_r.recv(4096):
                pass
        except (BlockingIOError, OSError):
            pass
        while self._back:
            conn = self._back.popleft()
            if conn.wfile.tail:
                conn.state, conn.since = FLUSH, self.clock()
                self._selector.register(conn.socket, selectors.EVENT_WRITE, conn)
            elif conn.close_after:
                self._drop(conn)
            else:
                self._next_request(conn)

    def _wait(self, conn, now):
        conn.state, conn.since = WAIT, now
        conn.started = now if conn.head else None
        self._selector.register(conn.socket, selectors.EVENT_READ, conn)

    def _next_request(self, conn):
        if not self._hand_over_if_complete(conn, 0):
            self._wait(conn, self.clock())

    def _ready(self, conn, events):
        if conn.state == FLUSH:
            try:
                done = conn.wfile.flush_some()
            except OSError:
                done, conn.close_after = True, True
            if done:
                self._selector.unregister(conn.socket)
                if conn.close_after:
                    self._drop(conn, registered=False)
                else:
                    self._next_request(conn)
            return
        try:
            data = conn.socket.recv(65536)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:
            self._drop(conn)
            return
        if conn.state == DRAIN:
            return
        if conn.started is None:
            conn.started = self.clock()
        searched = len(conn.head)
        conn.head += data
        if self._hand_over_if_complete(conn, searched, registered=True):
            return
        if len(conn.head) > self.limits.max_head:
            self._refuse(conn, 431 if b"\r\n" in conn.head[:self.limits.max_line] else 414)
        elif len(conn.head) > self.limits.max_line and b"\r\n" not in conn.head[:self.limits.max_line]:
            self._refuse(conn, 414)

    def _hand_over_if_complete(self, conn, searched: int, registered: bool = False) -> bool:
        head = conn.head
        if head[:2] == b"\r\n":           # stray CRLFs between requests (RFC 9112 allows them)
            del head[:len(head) - len(head.lstrip(b"\r\n"))]
            searched = 0
        end = head.find(b"\r\n\r\n", max(0, searched - 3))
        if end < 0 or end + 4 > self.limits.max_head:
            return False
        if registered:
            self._selector.unregister(conn.socket)
        request = bytes(head[:end + 4])
        del head[:end + 4]
        conn.close_after = declares_body(request)
        conn.rfile.feed(request)
        conn.state = BUSY
        self.server.process_conn(conn)
        return True

    def _refuse(self, conn, code: int):
        self.refused[code] += 1
        try:
            conn.wfile.send(memoryview(REFUSALS[code]))
            conn.socket.shutdown(socket.SHUT_WR)
        except OSError:
            self._drop(conn)
            return
        conn.state, conn.since, conn.head = DRAIN, self.clock(), bytearray()

    def _expire(self, now):
        lim = self.limits
        for conn in list(self._conns):
            age = now - conn.since
            if conn.state == WAIT and conn.started is not None and now - conn.started > lim.head_timeout:
                self._refuse(conn, 408)
            elif (conn.state == WAIT and conn.started is None and age > lim.idle_timeout
                  or conn.state == FLUSH and age > lim.write_timeout
                  or conn.state == DRAIN and age > lim.drain_timeout):
                self._drop(conn)

    def _drop(self, conn, registered: bool = True):
        if registered and conn.state != BUSY:
            try:
                self._selector.unregister(conn.socket)
            except (KeyError, ValueError):
                pass
        self._conns.discard(conn)
        conn.shut()

    # -- cheroot's server calls these to stop
    def stop(self, timeout: float = 5.0):
        self._stopping = True
        try:
            self._wake_w.send(b"x")
        except OSError:
            pass
        deadline = time.monotonic() + timeout
        while self._running.is_set() and time.monotonic() < deadline:
            time.sleep(0.01)

    def close(self):
        self._closed = True
        for conn in list(self._conns):
            if conn.state != BUSY:
                self._drop(conn)
        self._selector.close()
        self._wake_r.close()
        self._wake_w.close()
