"""The read-only status web service (``ethoscope-backup serve``): CherryPy over the status app.

CherryPy is the framework; every request goes to one handler, a thin adapter that passes the
method, path, query and headers to :meth:`ethoscope_rsync.web.app.StatusApp.respond` and copies
its answer back. The server (cheroot, the connection gate, socket activation) is
:mod:`ethoscope_rsync.web.server`; CherryPy's engine, autoreload and signal plumbing are not used.

Tuned for a status feed polled by many clients: no object-tree dispatch (one handler for every
path), no access log (the service logs only refused and failed requests), no request bodies.
"""
from __future__ import annotations

import json
import logging
import sys


def _import_framework():
    """Import cheroot and CherryPy without what a plain-HTTP status service never uses.

    cherrypy imports ``pkg_resources`` only to look up its own version string (it falls back to
    "unknown"): ~130 ms of start-up, which the first socket-activated request waits for, and
    ~8 MB. cheroot and the standard modules CherryPy pulls in (urllib.request, http.client)
    import ``ssl`` and OpenSSL's ``_hashlib`` when available and do without them otherwise: the
    service speaks plain HTTP on the LAN, so libssl and libcrypto (~4 MB resident) stay out.
    Only modules not loaded yet are held back, and only during this import: a process that
    already uses them (``ethoscope-backup daemon``) keeps them as they are.
    """
    held = [name for name in ("pkg_resources", "ssl", "_hashlib") if name not in sys.modules]
    for name in held:
        sys.modules[name] = None      # makes "import name" raise ImportError
    try:
        import cheroot.wsgi  # noqa: F401 - imported here, under the same conditions as cherrypy
        import cherrypy as cp
    finally:
        for name in held:
            if sys.modules.get(name, 0) is None:
                del sys.modules[name]
    return cp


cherrypy = _import_framework()

from ethoscope_rsync.web.clientlog import ClientLog  # noqa: E402 - after the framework, see _import_framework
from ethoscope_rsync.web.gate import Limits  # noqa: E402
from ethoscope_rsync.web.listen import ServeError, activated_sockets, client_address, format_address  # noqa: E402
from ethoscope_rsync.system.logs import Notifier  # noqa: E402
from ethoscope_rsync.web.server import THREADS, Service, run_until_stopped, stop_signals  # noqa: E402
from ethoscope_rsync.web.app import JSON_TYPE, StatusApp  # noqa: E402

__all__ = ["ServeError", "StatusServer", "make_wsgi_app", "serve"]

log = logging.getLogger("ethoscope_rsync.web")
_errors = ClientLog(log)
NO_BODY = (204, 304)


class _Handler:
    """The page handler for every path: ``StatusApp.respond`` in CherryPy's request."""

    def __init__(self, app: StatusApp):
        self.app = app

    def __call__(self):
        req, resp = cherrypy.serving.request, cherrypy.serving.response
        answer = self.app.respond(req.method, req.path_info, req.headers, req.query_string,
                                  client_address(req.remote.ip))
        resp.status = answer.status
        headers = resp.headers
        if answer.status in NO_BODY:
            headers.pop("Content-Type", None)
        for name, value in answer.headers:   # names as respond() spells them ("ETag", not "Etag")
            dict.__setitem__(headers, name, value)
        return answer.body


def _error_page(status, message, traceback, version):
    """CherryPy's own errors (e.g. an undecodable query string): JSON, never a traceback."""
    code = str(status).split(" ", 1)[0]
    cherrypy.serving.response.headers["Content-Type"] = JSON_TYPE
    return json.dumps({"error": str(message), "status": int(code) if code.isdigit() else 500})


def _unexpected_error():
    """An exception in the handler: one (escaped) log line, a JSON 500, no traceback to the client."""
    exc = sys.exc_info()[1]
    req, resp = cherrypy.serving.request, cherrypy.serving.response
    _errors.error("%s %s %s: 500 internal error: %s: %s", client_address(req.remote.ip), req.method,
                  req.path_info, type(exc).__name__, str(exc))
    body = b'{"error":"internal error","status":500}'
    resp.status = 500
    resp.headers["Content-Type"] = JSON_TYPE
    resp.headers["Content-Length"] = str(len(body))
    resp.body = [body]


class _Request(cherrypy._cprequest.Request):
    """CherryPy's request with this service's settings as class attributes (not per-request config)."""

    show_tracebacks = False
    show_mismatched_params = False
    methods_with_bodies = ()            # never read request bodies: nothing can be posted
    process_request_body = False
    error_page = {"default": _error_page}


class _Response(cherrypy._cprequest.Response):
    def __init__(self):
        super().__init__()
        dict.__setitem__(self.headers, "Server", "ethoscope-backup")


class _Dispatch:
    """CherryPy dispatcher: every path to the one handler. No config per path, so no tools run
    (not even CherryPy's default ones: there is nothing to encode, redirect or log per request)."""

    def __init__(self, handler):
        self.handler = handler

    def __call__(self, path_info):
        req = cherrypy.serving.request
        req.config = {}
        req.handler = self.handler
        req.error_response = _unexpected_error    # Request.run() resets it for every request


def _no_access_log():
    pass


def _framework_error(msg="", context="", severity=logging.INFO, traceback=False):
    """CherryPy's own error log (a failure outside the handler): one escaped line, no traceback."""
    if severity >= logging.WARNING:
        _errors.log(severity, "cherrypy%s: %s", " " + context if context else "", str(msg))


def make_wsgi_app(app: StatusApp):
    """The CherryPy application (a WSGI callable) around ``app``; not mounted in cherrypy.tree."""
    cp_app = cherrypy.Application(None, script_name="",
                                  config={"/": {"request.dispatch": _Dispatch(_Handler(app))}})
    cp_app.request_class, cp_app.response_class = _Request, _Response
    cp_app.log.screen = False
    cp_app.log.access = _no_access_log   # the service logs refused and failed requests only
    cp_app.log.error = _framework_error
    return cp_app


class StatusServer:
    """The status service as an object: ``start()`` serves in a thread, ``stop()`` ends it.

    Used by :func:`serve` and by ``daemon`` next to its backup loop. Give it sockets (from
    systemd) or a ``listen`` address (``"ADDR:PORT"``); :class:`ServeError` if binding fails.
    """

    def __init__(self, status_file, history_file, *, listen=None, cors_origin: str, stale_after: float,
                 horizon_days: float, sock=None, threads=THREADS, limits: Limits = Limits(), socks=(),
                 offsite_file=None):
        self.app = StatusApp(status_file, history_file, cors_origin=cors_origin, stale_after=stale_after,
                             horizon_days=horizon_days, offsite_file=offsite_file)
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
          horizon_days: float, offsite_file=None) -> int:
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
                                  offsite_file=offsite_file)
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
