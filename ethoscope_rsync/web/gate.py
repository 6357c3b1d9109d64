"""The connection gate: worker threads only ever see complete requests, never a slow client.

cheroot's own server hands a new connection straight to a worker thread, which then blocks
reading its request line; with a handful of threads, as many slow-loris clients (a byte every few
seconds, or nothing at all) starve everyone. So cheroot's server loop is not run: the :class:`Gate`
accepts and owns every connection that is not being answered, in one thread, and reads request
heads without blocking. A connection reaches the workers (``server.process_conn``, see
:mod:`ethoscope_rsync.web.cheroot_seam`) only when its head (request line and headers, up to the
blank line) is complete and well formed; the worker reads it from memory and writes without
blocking (:mod:`ethoscope_rsync.web.gateconn`): what the client does not take at once is left to
the gate to send later. So a worker's time is CPU time only.

Limits (:class:`Limits`): a head must be complete ``head_timeout`` seconds after its first byte
(else 408), fit ``max_line``/``max_head`` bytes (else 414/431) and have well-formed header lines
(else 400); an idle connection is closed after ``idle_timeout``, an unsent answer after
``write_timeout``; beyond ``connection_limit`` the longest-waiting connection makes room for the new
one. A refused request gets its short answer, then the connection is drained briefly before
closing, so the answer is not lost to a reset.
"""
from __future__ import annotations

import dataclasses
import logging
import select
import socket
import threading
import time

from ethoscope_rsync.web.app import refusal
from ethoscope_rsync.web.clientlog import ClientLog
from ethoscope_rsync.web.gateconn import BUSY, DRAIN, FLUSH, WAIT, check_head


@dataclasses.dataclass(frozen=True)
class Limits:
    head_timeout: float = 5.0      # from the first byte of a request to its blank line
    idle_timeout: float = 15.0     # a connection with no request started
    write_timeout: float = 30.0    # to hand the client an answer it does not read
    drain_timeout: float = 2.0     # reading the rest of a refused request before closing
    max_line: int = 8192           # request line (414 beyond)
    max_head: int = 16384          # request line and headers (431 beyond)
    connection_limit: int = 512    # open connections; beyond, the longest-waiting one is closed


REFUSALS = {code: refusal(code, phrase) for code, phrase in (
    (400, "Bad Request"), (408, "Request Timeout"), (414, "URI Too Long"), (431, "Request Header Fields Too Large"))}
REFUSALS_WHY = {408: "its request was not complete in time", 414: "its request line was too long",
                431: "its headers were too large"}


class Gate:
    """The connections of ``listeners``, from accept to close: ``run`` (its thread), ``stop``,
    ``close``; ``put`` and ``can_add_keepalive_connection`` for the workers.

    ``server`` is what answers complete requests: ``process_conn(conn)`` queues a connection for a
    worker, ``error_log(msg, level)`` logs; ``connection_class(server, sock, gate)`` makes the
    connection it gets (:class:`ethoscope_rsync.web.cheroot_seam.GatedConnection`).

    Connections sit in a one-shot epoll set: an event disarms the connection, so whoever holds
    it (the gate's thread, or a worker answering it) may re-arm it without racing the other.
    Workers re-arm kept-alive connections themselves: no wake-up of the gate's thread per request.
    """

    def __init__(self, server, connection_class, listeners, limits: Limits = Limits(), clock=time.monotonic):
        self.server, self.connection_class, self.limits, self.clock = server, connection_class, limits, clock
        self._epoll = select.epoll()
        self._wake_r, self._wake_w = socket.socketpair()
        self._listeners = {}
        for sock in list(listeners) + [self._wake_r]:
            sock.setblocking(False)
            self._listeners[sock.fileno()] = sock
            self._epoll.register(sock.fileno(), select.EPOLLIN)
        self._fds: dict = {}                # fd → connection, for every connection the gate knows
        self._scratch = bytearray(1 << 20)
        self._lock = threading.Lock()  # connection state changes and (un)arming
        self._stopping = self._closed = False
        self._running = threading.Event()
        self.clients = ClientLog(logging.getLogger("ethoscope_rsync.web"))   # what it refuses, rate-limited

    # -- called from worker threads (and the gate's own)
    @property
    def can_add_keepalive_connection(self) -> bool:
        return len(self._fds) < self.limits.connection_limit

    def put(self, conn):
        """A worker's answered keep-alive connection (its answer written or in its tail)."""
        self.release(conn, close=False)

    def release(self, conn, close: bool):
        """A worker is done with ``conn``: send its tail, then close it or wait for its next request."""
        conn.close_after = conn.close_after or close
        now = self.clock()
        problem = ""
        with self._lock:
            if self._closed or conn.socket.fileno() < 0:
                self._forget(conn)
            elif conn.wfile.tail:
                self._arm(conn, FLUSH, now, select.EPOLLOUT)
            elif conn.close_after:
                self._forget(conn)
            else:
                request = self._take_head(conn, 0)          # the next pipelined request
                if request is None:
                    conn.started = now if conn.head else None   # part of one
                    self._arm(conn, WAIT, now, select.EPOLLIN)
                else:
                    problem = self._dispatch(conn, request)
                    if problem:
                        conn.state = WAIT     # back in the gate's hands, to be refused
        if problem:
            self._refuse(conn, 400, problem)

    def _arm(self, conn, state, since, events):
        conn.state, conn.since = state, since
        fd = conn.socket.fileno()
        self._fds[fd] = conn
        try:
            self._epoll.modify(fd, events | select.EPOLLONESHOT)
        except FileNotFoundError:
            self._epoll.register(fd, events | select.EPOLLONESHOT)

    def _forget(self, conn):
        """Close ``conn`` and forget it (under the lock)."""
        fd = conn.socket.fileno()
        if self._fds.get(fd) is conn:
            del self._fds[fd]
            try:
                self._epoll.unregister(fd)
            except (FileNotFoundError, ValueError, OSError):
                pass
        conn.shut()

    def _drop(self, conn):
        with self._lock:
            if conn.state != BUSY:
                self._forget(conn)

    # -- the gate's thread
    def run(self, expiration_interval: float = 0.5):
        self._running.set()
        try:
            last_expiry = self.clock()
            while not self._stopping:
                for fd, events in self._epoll.poll(expiration_interval):
                    listener = self._listeners.get(fd)
                    if listener is self._wake_r:
                        self._drain_wake()
                    elif listener is not None:
                        self._accept(listener)
                    else:
                        conn = self._fds.get(fd)
                        if conn is not None:
                            self._ready(conn)
                now = self.clock()
                if now - last_expiry >= expiration_interval:
                    last_expiry = now
                    self._expire(now)
        finally:
            self._running.clear()

    def _drain_wake(self):
        try:
            while self._wake_r.recv(4096):
                pass
        except OSError:
            pass

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
            if len(self._fds) >= self.limits.connection_limit:
                self._evict_oldest()
            conn = self.connection_class(self.server, sock, self)
            if isinstance(addr, tuple):
                conn.remote_addr, conn.remote_port = addr[0], addr[1]
            conn.started = None
            with self._lock:
                self._arm(conn, WAIT, self.clock(), select.EPOLLIN)

    def _evict_oldest(self):
        waiting = [c for c in list(self._fds.values()) if c.state != BUSY]
        if waiting:
            oldest = min(waiting, key=lambda c: c.since)
            self.clients.warning("too many connections: dropped the longest-waiting one, from %s",
                                 getattr(oldest, "remote_addr", None) or "?")
            self._drop(oldest)

    def _ready(self, conn):
        if conn.state == FLUSH:
            try:
                done = conn.wfile.flush_some()
            except OSError:
                done, conn.close_after = True, True
            if done:
                conn.state = BUSY       # back in the gate's hands: release() decides what next
                self.release(conn, close=False)
            else:
                with self._lock:
                    self._arm(conn, FLUSH, conn.since, select.EPOLLOUT)
            return
        try:
            if conn.state == DRAIN:        # a refused request's rest: read into scratch, dropped
                data = b"x" if conn.socket.recv_into(self._scratch) else b""
            else:                          # never more than a refusal needs to see
                data = conn.socket.recv(self.limits.max_head + 1 - len(conn.head))
        except (BlockingIOError, InterruptedError):
            data = None
        except OSError:
            data = b""
        if data == b"":
            conn.state = BUSY
            with self._lock:
                self._forget(conn)
            return
        if data and conn.state == WAIT:
            if conn.started is None:
                conn.started = self.clock()
            searched = len(conn.head)
            conn.head += data
            request = self._take_head(conn, searched)
            if request is not None:
                problem = self._dispatch(conn, request)
                if problem:
                    self._refuse(conn, 400, problem)
                return
            if len(conn.head) > self.limits.max_head:
                self._refuse(conn, 431 if b"\r\n" in conn.head[:self.limits.max_line] else 414)
                return
            if len(conn.head) > self.limits.max_line and b"\r\n" not in conn.head[:self.limits.max_line]:
                self._refuse(conn, 414)
                return
        with self._lock:
            self._arm(conn, conn.state, conn.since, select.EPOLLIN)

    def _take_head(self, conn, searched: int) -> bytes | None:
        """The complete head at the start of ``conn.head``, taken out of it; None while incomplete.
        ``searched``: how many bytes of it were already searched for the blank line."""
        head = conn.head
        if head[:2] == b"\r\n":           # stray CRLFs between requests (RFC 9112 allows them)
            del head[:len(head) - len(head.lstrip(b"\r\n"))]
            searched = 0
        end = head.find(b"\r\n\r\n", max(0, searched - 3))
        if end < 0 or end + 4 > self.limits.max_head:
            return None
        request = bytes(head[:end + 4])
        del head[:end + 4]
        return request

    def _dispatch(self, conn, request: bytes) -> str:
        """Hand a complete head to a worker; → why it is malformed instead ("" when handed over)."""
        problem, has_body = check_head(request)
        if problem:
            return problem
        conn.close_after = has_body
        conn.rfile.feed(request)
        conn.state = BUSY
        self.server.process_conn(conn)
        return ""

    def _refuse(self, conn, code: int, why: str = ""):
        self.clients.warning("refused a request from %s: %d, %s", getattr(conn, "remote_addr", None) or "?",
                             code, why or REFUSALS_WHY[code])
        try:
            conn.wfile.send(memoryview(REFUSALS[code]))
            conn.socket.shutdown(socket.SHUT_WR)
        except OSError:
            self._drop(conn)
            return
        conn.head = bytearray()
        with self._lock:
            self._arm(conn, DRAIN, self.clock(), select.EPOLLIN)

    def _expire(self, now):
        lim = self.limits
        for conn in list(self._fds.values()):
            age = now - conn.since
            if conn.state == WAIT and conn.started is not None and now - conn.started > lim.head_timeout:
                self._refuse(conn, 408)
            elif (conn.state == WAIT and conn.started is None and age > lim.idle_timeout
                  or conn.state == FLUSH and age > lim.write_timeout
                  or conn.state == DRAIN and age > lim.drain_timeout):
                self._drop(conn)

    # -- the service stops it
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
        with self._lock:
            self._closed = True
            for conn in list(self._fds.values()):
                if conn.state != BUSY:
                    self._forget(conn)
        self._epoll.close()
        self._wake_r.close()
        self._wake_w.close()
