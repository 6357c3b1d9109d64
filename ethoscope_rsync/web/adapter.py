"""The read-only status web service (``ethoscope-backup serve``): the app as a WSGI callable, served.

:func:`make_wsgi_app` adapts :meth:`ethoscope_rsync.web.app.StatusApp.respond` to WSGI (PEP 3333):
it passes the method, the decoded path, the query, the headers and the client's address, and
copies the answer back; an exception in the app is a JSON 500 and one escaped log line, never a
traceback. The server (the connection gate, cheroot's workers, socket activation) is
:mod:`ethoscope_rsync.web.server`.

No framework: the service has one handler and no per-path configuration, tools or engine, so
CherryPy would add only its import (with ``pkg_resources``: ~90 ms of the first socket-activated
answer and ~13 MB here, see bench/status_service.py; on Debian 12 also the ``cgi`` module Python
3.13 removed) and a request object per request. cheroot, CherryPy's own HTTP server, serves the
callable through its WSGI interface.
No access log (the service logs only refused and failed requests), no request bodies.
"""
from __future__ import annotations

import http
import logging
import sys
from typing import Callable, Iterable, Mapping, NamedTuple

from ethoscope_rsync.system.logs import Notifier
from ethoscope_rsync.web.app import JSON_TYPE, NOSNIFF, Response, StatusApp, problem_body
from ethoscope_rsync.web.clientlog import ClientLog
from ethoscope_rsync.web.gate import Limits
from ethoscope_rsync.web.listen import ServeError, activated_sockets, client_address, format_address
from ethoscope_rsync.web.server import THREADS, Service, run_until_stopped, stop_signals

__all__ = ["ServeError", "StatusApp", "StatusServer", "make_wsgi_app", "serve"]

log = logging.getLogger("ethoscope_rsync.web")
_errors = ClientLog(log)
INTERNAL_ERROR = problem_body(500, "internal error")
NO_BODY = (204, 304)
WSGIApp = Callable[[dict, Callable], Iterable[bytes]]


class Request(NamedTuple):
    """A WSGI request as ``StatusApp.respond`` takes it."""
    method: str
    path: str
    headers: Mapping
    query: str
    client: str


def request_of(environ: dict) -> Request:
    """The request in a WSGI environ.

    PATH_INFO holds the path's bytes as Latin-1 (PEP 3333), already %-decoded: read back as UTF-8
    (bytes that are not stay as surrogates, escaped wherever they are shown)."""
    path = environ.get("PATH_INFO", "").encode("latin-1").decode("utf-8", "surrogateescape")
    headers = {key[5:].replace("_", "-").lower(): value for key, value in environ.items() if key.startswith("HTTP_")}
    return Request(environ.get("REQUEST_METHOD", ""), path, headers, environ.get("QUERY_STRING", ""),
                   client_address(environ.get("REMOTE_ADDR")))


def _status_line(status: int) -> str:
    try:
        return "%d %s" % (status, http.HTTPStatus(status).phrase)
    except ValueError:
        return "%d Unknown" % status


def make_wsgi_app(app: StatusApp) -> WSGIApp:
    """The WSGI callable (PEP 3333) that answers every request with ``app.respond``."""

    def status_app(environ: dict, start_response: Callable) -> list:
        method, path, headers, query, client = request_of(environ)
        try:
            answer = app.respond(method, path, headers, query, client)
        except Exception as error:  # noqa: BLE001 - a bug of ours: the client gets a 500, never a traceback
            _errors.error("%s %s %s: 500 internal error: %s: %s", client, method, path, type(error).__name__,
                          str(error))
            answer = Response(500, [("Content-Type", JSON_TYPE), ("Content-Length", str(len(INTERNAL_ERROR))),
                                    NOSNIFF], b"" if method == "HEAD" else INTERNAL_ERROR)
        start_response(_status_line(answer.status), list(answer.headers))
        return [] if answer.status in NO_BODY else [answer.body]

    return status_app


class StatusServer:
    """The status service as an object: ``start()`` serves in a thread, ``stop()`` ends it.

    Used by :func:`serve` and by ``daemon`` next to its backup loop. Give it sockets (from
    systemd) or a ``listen`` address (``"ADDR:PORT"``); :class:`ServeError` if binding fails.
    """

    def __init__(self, status_file, history_file, *, listen=None, cors_origin: str, stale_after: float,
                 horizon_days: float, sock=None, threads=THREADS, limits: Limits = Limits(), socks=(),
                 offsite_file=None, overdue_after: float = 0.0, pauses_file=None):
        self.app = StatusApp(status_file, history_file, cors_origin=cors_origin, stale_after=stale_after,
                             horizon_days=horizon_days, offsite_file=offsite_file, overdue_after=overdue_after,
                             pauses_file=pauses_file)
        socks = list(socks) + ([sock] if sock is not None else [])
        self.service = Service(make_wsgi_app(self.app), socks=socks, listen=listen, threads=threads,
                               limits=limits)

    @property
    def addresses(self) -> list:
        return self.service.addresses

    @property
    def running(self) -> bool:
        return self.service.running

    def start(self) -> None:
        self.service.start()

    def stop(self, timeout=5.0) -> None:
        self.service.stop(timeout)

    def idle_for(self) -> float:
        return self.service.idle_for()


def _setup_logging():
    """Lines on stderr when nothing configured logging (serve() called by itself); under the
    command line the package's logger (journald, or the terminal) has them already."""
    if not (logging.getLogger().handlers or logging.getLogger("ethoscope_rsync").handlers or log.handlers):
        h = logging.StreamHandler(sys.stderr)
        h.setFormatter(logging.Formatter("ethoscope-backup serve: %(message)s"))
        log.addHandler(h)
        log.setLevel(logging.INFO)
        log.propagate = False


def serve(status_file, history_file, *, listen, cors_origin: str, idle_exit: float, stale_after: float,
          horizon_days: float, offsite_file=None, overdue_after: float = 0.0, pauses_file=None) -> int:
    """Run the status service until SIGTERM/SIGINT/SIGHUP or ``idle_exit`` seconds without requests.

    Socket-activated when systemd passed sockets, else binds ``listen`` (``[status] listen``).
    Returns the exit code: 0 after a clean stop, 1 if the server died, 2 when it cannot listen.
    ``idle_exit`` of 0/None disables the idle exit.
    """
    _setup_logging()
    with stop_signals() as stop:
        try:
            socks = activated_sockets()
            server = StatusServer(status_file, history_file, listen=listen, socks=socks,
                                  cors_origin=cors_origin, stale_after=stale_after, horizon_days=horizon_days,
                                  offsite_file=offsite_file, overdue_after=overdue_after, pauses_file=pauses_file)
            server.start()
        except ServeError as exc:
            sys.stderr.write("ethoscope-backup serve: %s\n" % exc)
            sys.stderr.flush()
            return 2
        notify = Notifier().send
        where = ", ".join(format_address(a) for a in server.addresses)
        how = "socket-activated" if socks else "bound"
        log.info("serving %s on %s (%s)", status_file, where, how)
        notify("READY=1\nSTATUS=Serving %s on %s (%s)" % (status_file, where, how))
        reason = run_until_stopped(server.service, stop, idle_exit, notify)
    log.info("exiting: %s (%d requests)", reason, server.service.requests)
    return 1 if reason == "server thread died" else 0
