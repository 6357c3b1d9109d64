"""The status service's HTTP server and its lifecycle: cheroot, on a socket we hold, behind the gate.

:class:`HTTPServer` is cheroot's WSGI server made to serve a socket that already listens (from
systemd or :func:`ethoscope_rsync.web.listen.bind_socket`) and to let :class:`ethoscope_rsync.web.gate.Gate`
own the connections. It never creates, probes or adopts a socket: cheroot otherwise takes fd 3
as AF_INET whenever ``LISTEN_PID`` is set (wrong for systemd's dual-stack IPv6 socket) and
connects to its own port to stop (which, on a socket unit, would start the service again).

:class:`Service` runs one in a thread and knows when it was last busy; :func:`run_until_stopped`
is the main loop of ``ethoscope-backup serve``: until SIGTERM/SIGINT/SIGHUP or an idle time.
"""
from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import threading
import time

import cheroot.wsgi

from ethoscope_rsync.web.clientlog import ClientLog
from ethoscope_rsync.web.gate import Gate, Limits
from ethoscope_rsync.web.listen import bind_socket

log = logging.getLogger("ethoscope_rsync.web")
_server_log = ClientLog(log)    # cheroot's messages can quote what a client sent

# Workers never wait for a client (the gate reads heads and sends tails), so their time is CPU
# under one GIL: two are enough to answer cached documents while the other rebuilds one, and
# fewer threads contend less for the GIL (measured: more threads, no more answers a second).
THREADS = 2


class HTTPServer(cheroot.wsgi.Server):
    """cheroot's WSGI server on listening ``socks``, connections managed by a :class:`Gate`."""

    def __init__(self, socks: list, wsgi_app, threads: int = THREADS, limits: Limits = Limits()):
        self._given_sockets = list(socks)
        self.limits = limits
        super().__init__(socks[0].getsockname()[:2], wsgi_app, numthreads=threads,
                         server_name="ethoscope-backup", request_queue_size=socket.SOMAXCONN,
                         timeout=limits.idle_timeout, shutdown_timeout=2)
        self.max_request_header_size = limits.max_head

    def bind(self, family, type, proto=0):  # noqa: A002 - cheroot's signature
        # prepare() calls this to create the listening socket: ours instead.
        self.socket = self._given_sockets[0]
        for sock in self._given_sockets:
            # Accepted sockets inherit TCP_NODELAY: a small answer leaves at once.
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.bind_addr = self.resolve_real_bind_addr(self.socket)
        return self.socket

    def prepare(self):
        for name in ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"):
            os.environ.pop(name, None)   # else cheroot adopts fd 3 as AF_INET by itself
        super().prepare()
        cheroots_own = self._connections
        self._connections = Gate(self, self.limits, listeners=self._given_sockets)
        cheroots_own.close()

    @property
    def gate(self) -> Gate:
        return self._connections

    def stop(self):
        # cheroot's stop() connects to its own port to wake accept(); the gate needs no such
        # probe, and on a socket unit the connection would start the service again.
        self.socket = None
        try:
            super().stop()
        finally:
            for sock in self._given_sockets:
                sock.close()

    def error_log(self, msg="", level=20, traceback=False):
        if level >= logging.WARNING:
            _server_log.log(level, "http server: %s", str(msg).strip())


class Service:
    """An HTTP server for ``wsgi_app`` in a thread: ``start()``, ``stop()``, ``idle_for()``.

    Give it listening ``socks`` (from systemd) or a ``listen`` address (``"ADDR:PORT"``);
    :class:`ethoscope_rsync.web.listen.ServeError` when binding fails.
    """

    def __init__(self, wsgi_app, socks=(), listen=None, threads: int = THREADS, limits: Limits = Limits()):
        self._app = wsgi_app
        self._socks, self._listen = list(socks), listen
        self._threads, self._limits = threads, limits
        self.server = None
        self._thread = None
        self.requests = 0
        self._in_flight = 0
        self._last_activity = time.monotonic()
        self._count_lock = threading.Lock()

    def _counted(self, environ, start_response):
        with self._count_lock:
            self.requests += 1
            self._in_flight += 1
        try:
            return self._app(environ, start_response)
        finally:
            with self._count_lock:
                self._in_flight -= 1
                self._last_activity = time.monotonic()

    @property
    def addresses(self) -> list:
        """[(host, port)] listened on."""
        return [s.getsockname()[:2] for s in self._socks]

    def start(self) -> None:
        if not self._socks:
            self._socks = [bind_socket(self._listen)]
        self.server = HTTPServer(self._socks, self._counted, self._threads, self._limits)
        self.server.prepare()
        self._thread = threading.Thread(target=self._serve, name="status-http", daemon=True)
        self._thread.start()

    def _serve(self):
        try:
            self.server.serve()
        except Exception:  # noqa: BLE001 - logged; the main loop notices the dead thread
            log.exception("status server stopped")

    @property
    def running(self) -> bool:
        return bool(self._thread and self._thread.is_alive())

    def idle_for(self) -> float:
        """Seconds since the last request was answered (0 while one is being answered)."""
        with self._count_lock:
            return 0.0 if self._in_flight else time.monotonic() - self._last_activity

    def stop(self, timeout: float = 5.0) -> None:
        if self.server is not None:
            self.server.stop()
        if self._thread is not None:
            self._thread.join(timeout)
        self.server = None


@contextlib.contextmanager
def stop_signals():
    """An Event set by SIGTERM, SIGINT or SIGHUP while in the block (handlers restored after).

    Installed before the server starts, so a SIGTERM right after the first answer stops cleanly.
    """
    stop = threading.Event()
    previous = {}
    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        try:
            previous[signum] = signal.signal(signum, lambda *_: stop.set())
        except ValueError:   # not the main thread
            pass
    try:
        yield stop
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def run_until_stopped(service: Service, stop: threading.Event, idle_exit: float,
                      notify=lambda message: None) -> str:
    """Serve until ``stop`` is set, ``idle_exit`` seconds pass without requests (0: never) or the
    server thread dies; then stop ``service`` and return why. ``notify`` gets sd_notify text."""
    idle = float(idle_exit or 0)
    reason, seen = "stopped", 0
    try:
        while not stop.is_set():
            wait = 1.0
            if idle > 0:
                left = idle - service.idle_for()
                if left <= 0:
                    reason = "idle for %gs" % idle
                    break
                wait = min(wait, max(0.01, left))
            stop.wait(wait)
            if not service.running:
                reason = "server thread died"
                break
            if service.requests != seen:
                seen = service.requests
                notify("STATUS=Serving, %d requests" % seen)
    finally:
        notify("STOPPING=1\nSTATUS=Stopping: %s" % reason)
        service.stop()
    return reason
