"""Everything the status service uses of cheroot, in this one module, through its public API only.

cheroot parses a request, calls the WSGI app and writes its answer, in its worker threads. Here it
neither accepts nor reads connections: the gate (:mod:`ethoscope_rsync.web.gate`) does, and hands
a connection to the workers only once its request head is complete. What is used, the same in
cheroot 9.0 (Debian 12) and 10.0 (Debian 13):

- ``cheroot.wsgi.Server(bind_addr, wsgi_app, numthreads=, server_name=, timeout=, shutdown_timeout=)``
  and its documented attributes ``max_request_header_size`` and ``software``;
- its worker pool ``server.requests``, a ``cheroot.workers.threadpool.ThreadPool`` (documented:
  "ThreadPool objects must provide min, get(), put(obj), start() and stop(timeout)");
- ``server.process_conn(conn)``, which queues a connection for a worker;
- ``server.put_conn(conn)`` and ``server.can_add_keepalive_connection``, overridden: a worker gives a
  kept-alive connection back to the gate, and asks the gate whether it may keep one;
- ``server.error_log(msg, level, traceback)``, overridden ("Override this in subclasses as desired");
- ``cheroot.server.HTTPConnection(server, sock, makefile=)`` with the gate's files
  (:mod:`ethoscope_rsync.web.gateconn`) instead of socket files, and its ``RequestHandlerClass``: a
  ``cheroot.server.HTTPRequest`` whose ``simple_response`` (cheroot's own refusals: a malformed
  request line, an HTTP version it does not speak...) answers as the gate's refusals do.

Never called: ``prepare()``, ``serve()``, ``start()`` and ``stop()``. They bind a socket (or adopt fd 3
as IPv4 whenever ``LISTEN_PID`` is set, wrong for systemd's dual-stack socket), run cheroot's own
connection manager (a worker would then wait on a slow client), and stop by connecting to the port
(which, on a socket unit, starts the service again). :func:`missing` says what of the above a
cheroot lacks (the service refuses to start on it, naming the version);
``tests/unit/web/test_cheroot_seam.py`` runs requests through the real worker pool and names
cheroot's version when any of it behaves otherwise.
"""
from __future__ import annotations

import logging

import cheroot
import cheroot.server
import cheroot.workers.threadpool
import cheroot.wsgi

from ethoscope_rsync.web.app import refusal
from ethoscope_rsync.web.clientlog import ClientLog
from ethoscope_rsync.web.gate import Gate, Limits
from ethoscope_rsync.web.gateconn import WAIT, HeadReader, TailWriter

VERSION = cheroot.__version__
SERVER_NAME = "ethoscope-backup"
SHUTDOWN_TIMEOUT = 2.0     # seconds the workers get to finish their answers at a stop

log = logging.getLogger("ethoscope_rsync.web")
_server_log = ClientLog(log)    # cheroot's messages can quote what a client sent


def missing() -> list:
    """What this module uses that the installed cheroot lacks ([] when it has everything)."""
    wanted = {cheroot.wsgi.Server: ("process_conn", "put_conn", "can_add_keepalive_connection", "error_log",
                                    "max_request_header_size", "software"),
              cheroot.server.HTTPConnection: ("RequestHandlerClass", "communicate", "close"),
              cheroot.server.HTTPRequest: ("simple_response", "parse_request"),
              cheroot.workers.threadpool.ThreadPool: ("start", "put", "stop")}
    return ["%s.%s" % (cls.__name__, name) for cls, names in wanted.items() for name in names
            if not hasattr(cls, name)]


class Request(cheroot.server.HTTPRequest):
    """cheroot's request, whose own refusals are the service's: JSON, nosniff, then the connection closes."""

    def simple_response(self, status, msg=""):
        code, _, phrase = str(status).partition(" ")
        _server_log.warning("refused a request from %s: %s (%s)", self.conn.remote_addr or "?", str(status),
                            str(msg))
        self.close_connection = True
        try:
            self.conn.wfile.write(refusal(int(code), phrase) if code.isdigit() and phrase else refusal(500))
        except OSError:          # the client is gone: nothing to tell it
            pass


class GatedConnection(cheroot.server.HTTPConnection):
    """A cheroot connection whose files are the gate's: a :class:`HeadReader` and a :class:`TailWriter`.

    ``close()`` goes back to the gate, which sends the rest of the answer first."""

    RequestHandlerClass = Request

    def __init__(self, server, sock, gate):
        self.gate = gate
        super().__init__(server, sock, makefile=self._file)
        self.state, self.since, self.started = WAIT, 0.0, None
        self.head = bytearray()
        self.close_after = False

    @staticmethod
    def _file(sock, mode, bufsize=None):
        return HeadReader() if "r" in mode else TailWriter(sock)

    def close(self):
        """A worker is done with it: the gate sends the rest of the answer, then closes."""
        self.gate.release(self, close=True)

    def shut(self):
        """Close the socket (the gate's call, once the answer is sent or given up on)."""
        try:
            super().close()
        except OSError:
            pass


class WorkerServer(cheroot.wsgi.Server):
    """cheroot's WSGI server as a pool of workers for ``wsgi_app``; no socket of its own.

    ``gate`` (set before :meth:`start_workers`) takes kept-alive connections back and says
    whether there is room for one more."""

    def __init__(self, bind_addr: tuple, wsgi_app, threads: int, limits: Limits):
        # cheroot's stub says int for both timeouts; cheroot uses them as seconds, fractions included.
        super().__init__(bind_addr, wsgi_app, numthreads=threads, server_name=SERVER_NAME,
                         timeout=limits.idle_timeout, shutdown_timeout=SHUTDOWN_TIMEOUT)  # type: ignore[arg-type]
        self.max_request_header_size = limits.max_head
        self.software = SERVER_NAME           # SERVER_SOFTWARE in the WSGI environ
        self.gate: Gate | None = None

    def start_workers(self) -> None:
        self.requests.start()

    def stop_workers(self) -> None:
        self.requests.stop(self.shutdown_timeout)

    @property
    def can_add_keepalive_connection(self) -> bool:
        assert self.gate is not None            # set before start_workers: no connection comes sooner
        return self.gate.can_add_keepalive_connection

    def put_conn(self, conn) -> None:
        assert self.gate is not None            # set before start_workers: no connection comes sooner
        self.gate.put(conn)

    def error_log(self, msg="", level=20, traceback=False):
        if level >= logging.WARNING:
            _server_log.log(level, "http server: %s", str(msg).strip())
