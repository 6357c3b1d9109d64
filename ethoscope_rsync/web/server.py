"""The status service's HTTP server and its lifecycle: the gate on our sockets, cheroot's workers.

:class:`Service` serves a WSGI app on listening sockets we hold (from systemd, or bound by
:func:`ethoscope_rsync.web.listen.bind_socket`): the gate (:mod:`ethoscope_rsync.web.gate`) accepts
and reads in its own thread, cheroot's worker pool (:mod:`ethoscope_rsync.web.cheroot_seam`, the
one module that touches cheroot) answers complete requests. Nothing here creates, adopts or probes
a socket: a stop closes our descriptors and nothing connects to the port (on a socket unit, a
connection would start the service again). :func:`run_until_stopped` is the main loop of
``ethoscope-backup serve``: until SIGTERM/SIGINT/SIGHUP or an idle time.
"""
from __future__ import annotations

import contextlib
import logging
import signal
import socket
import threading
import time

from ethoscope_rsync.web import cheroot_seam
from ethoscope_rsync.web.clientlog import ClientLog
from ethoscope_rsync.web.gate import Gate, Limits
from ethoscope_rsync.web.listen import ServeError, bind_socket

log = logging.getLogger("ethoscope_rsync.web")
_errors = ClientLog(log)     # a failure in the gate's loop can quote what a client sent

# Workers never wait for a client (the gate reads heads and sends tails), so their time is CPU
# under one GIL: two are enough to answer cached documents while the other rebuilds one, and
# fewer threads contend less for the GIL (measured: more threads, no more answers a second).
THREADS = 2


class Service:
    """An HTTP server for ``wsgi_app`` in a thread: ``start()``, ``stop()``, ``idle_for()``.

    Give it listening ``socks`` (from systemd) or a ``listen`` address (``"ADDR:PORT"``);
    :class:`ethoscope_rsync.web.listen.ServeError` when binding fails.
    """

    def __init__(self, wsgi_app, socks=(), listen=None, threads: int = THREADS, limits: Limits = Limits()):
        self._app = wsgi_app
        self._socks, self._listen = list(socks), listen
        self._threads, self._limits = threads, limits
        self.server: cheroot_seam.WorkerServer | None = None
        self.gate: Gate | None = None
        self._thread: threading.Thread | None = None
        self._stopping = False
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
        lacking = cheroot_seam.missing()
        if lacking:
            raise ServeError("cheroot %s is not supported: it lacks %s" % (cheroot_seam.VERSION, ", ".join(lacking)))
        if not self._socks:
            self._socks = [bind_socket(self._listen)]
        for sock in self._socks:
            # Accepted sockets inherit TCP_NODELAY: a small answer leaves at once.
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.server = cheroot_seam.WorkerServer(self._socks[0].getsockname()[:2], self._counted,
                                                self._threads, self._limits)
        self.gate = self.server.gate = Gate(self.server, cheroot_seam.GatedConnection, self._socks, self._limits)
        self.server.start_workers()
        self._stopping = False
        self._thread = threading.Thread(target=self._serve, name="status-http", daemon=True)
        self._thread.start()

    def _serve(self):
        gate = self.gate
        assert gate is not None                 # start() sets it before it starts this thread
        while not self._stopping:
            try:
                gate.run()
            except Exception as error:  # noqa: BLE001 - a bug in the loop: one line, and the loop goes on
                _errors.error("status server: %s: %s", type(error).__name__, str(error))

    @property
    def running(self) -> bool:
        return bool(self._thread and self._thread.is_alive())

    def idle_for(self) -> float:
        """Seconds since the last request was answered (0 while one is being answered)."""
        with self._count_lock:
            return 0.0 if self._in_flight else time.monotonic() - self._last_activity

    def stop(self, timeout: float = 5.0) -> None:
        """Stop accepting, let the workers finish (``SHUTDOWN_TIMEOUT``), close the sockets."""
        self._stopping = True
        if self.gate is not None:
            self.gate.stop(timeout)
        if self._thread is not None:
            self._thread.join(timeout)
        if self.server is not None:
            self.server.stop_workers()
        if self.gate is not None:
            self.gate.close()
        for sock in self._socks:
            sock.close()
        self.server = self.gate = None


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
