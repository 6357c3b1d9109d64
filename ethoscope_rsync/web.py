"""The read-only status web service (``ethoscope-backup serve``): CherryPy over the status app.

CherryPy is the framework; every request goes to one handler, a thin adapter that passes the
method, path, query and headers to :meth:`ethoscope_rsync.webapp.StatusApp.respond` and copies
its answer back. The server (cheroot, the connection gate, socket activation) is
:mod:`ethoscope_rsync.server`; CherryPy's engine, autoreload and signal plumbing are not used.

Tuned for a status feed polled by many clients: no object-tree dispatch (one handler for every
path), no access log (the service logs only refused and failed requests), no request bodies.
"""
from __future__ import annotations

import json
import logging
import sys

from .clientlog import ClientLog
from .gate import Limits
from .listen import ServeError, activated_sockets, client_address, format_address
from .logs import Notifier
from .server import Service, run_until_stopped, stop_signals
from .webapp import JSON_TYPE, StatusApp

__all__ = ["ServeError", "StatusServer", "make_wsgi_app", "serve"]


def _import_cherrypy():
    # cherrypy imports pkg_resources only to look up its own version string and falls back to
    # "unknown" without it; skipping it saves ~130 ms of start-up (socket activation: the first
    # request waits for it) and ~8 MB of memory.
    if "cherrypy" in sys.modules or "pkg_resources" in sys.modules:
        import cherrypy as cp
        return cp
    sys.modules["pkg_resources"] = None  # makes "import pkg_resources" raise ImportError
    try:
        import cherrypy as cp
    finally:
        del sys.modules["pkg_resources"]
    return cp


cherrypy = _import_cherrypy()

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
        for name, value in answer.headers:
            headers[name] = value
        return answer.body


class _Dispatch:
    """CherryPy dispatcher: every path to the one handler, with the application's config."""

    def __init__(self, handler, config: dict):
        self.handler, self.config = handler, config

    def __call__(self, path_info):
        req = cherrypy.serving.request
        req.config = dict(self.config)
        req.handler = self.handler


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


def _no_access_log():
    pass


def make_wsgi_app(app: StatusApp):
    """The CherryPy application (a WSGI callable) around ``app``; not mounted in cherrypy.tree."""
    conf = {
        "request.show_tracebacks": False,
        "request.show_mismatched_params": False,
        "request.methods_with_bodies": (),   # never read request bodies: nothing can be posted
        "request.process_request_body": False,
        "request.error_response": _unexpected_error,
        "error_page.default": _error_page,
        "tools.encode.on": False,
        "tools.trailing_slash.on": False,
        "response.headers.server": "ethoscope-backup",
        "log.screen": False,
        "log.access_file": "",
        "log.error_file": "",
    }
    handler = _Handler(app)
    conf["request.dispatch"] = _Dispatch(handler, {**cherrypy.config, **conf})
    cp_app = cherrypy.Application(None, script_name="", config={"/": conf})
    cp_app.log.screen = False
    cp_app.log.access = _no_access_log
    cp_app.log.error_log.propagate = False
    return cp_app


class StatusServer:
    """The status service as an object: ``start()`` serves in a thread, ``stop()`` ends it.

    Used by :func:`serve` and by ``daemon`` next to its backup loop. Give it sockets (from
    systemd) or a ``listen`` address (``"ADDR:PORT"``); :class:`ServeError` if binding fails.
    """

    def __init__(self, status_file, history_file, listen=None, sock=None, cors_origin="*",
                 stale_after=86400.0, threads=4, limits: Limits = Limits(), socks=()):
        self.app = StatusApp(status_file, history_file, cors_origin=cors_origin, stale_after=stale_after)
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
    if not logging.getLogger().handlers and not log.handlers:
        h = logging.StreamHandler(sys.stderr)
        h.setFormatter(logging.Formatter("ethoscope-backup serve: %(message)s"))
        log.addHandler(h)
        log.setLevel(logging.INFO)
        log.propagate = False


def serve(status_file, history_file, listen=None, cors_origin="*", idle_exit=300.0,
          stale_after=86400.0) -> int:
    """Run the status service until SIGTERM/SIGINT/SIGHUP or ``idle_exit`` seconds without requests.

    Socket-activated when systemd passed sockets, else binds ``listen`` (default ``0.0.0.0:8093``).
    Returns the exit code: 0 after a clean stop, 1 if the server died, 2 when it cannot listen.
    ``idle_exit`` of 0/None disables the idle exit.
    """
    _setup_logging()
    with stop_signals() as stop:
        try:
            socks = activated_sockets()
            server = StatusServer(status_file, history_file, listen=listen, socks=socks,
                                  cors_origin=cors_origin, stale_after=stale_after)
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
