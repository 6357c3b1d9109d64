"""The read-only status web service (``ethoscope-backup serve``).

A CherryPy application served by cheroot directly (no ``cherrypy.engine``: no autoreload, no
signal plumbing and none of the engine's stop-path port probing). It reads ``status.json`` and
``history.json`` on every request (re-rendering only when a file's inode/mtime/size changed) and
can change nothing.

The listening socket comes from :mod:`ethoscope_rsync.listen` (socket activation or bound) and is
handed to cheroot, which otherwise would ``fromfd(3, AF_INET)`` on its own: cheroot never creates
or probes a socket.
"""
from __future__ import annotations

import ctypes
import json
import logging
import os
import signal
import socket
import sys
import threading
import time

import cheroot.wsgi


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

from . import render
from .listen import ServeError, activated_socket, bind_socket, client_address, format_address
from .logs import Notifier

log = logging.getLogger("ethoscope_rsync.web")

JSON_TYPE = "application/json"
METRICS_TYPE = "text/plain; version=0.0.4; charset=utf-8"
HTML_TYPE = "text/html; charset=utf-8"
ALLOWED = "GET, HEAD, OPTIONS"


# ---------------------------------------------------------------- cheroot with a given socket

class _Server(cheroot.wsgi.Server):
    """cheroot's WSGI server on a socket we already hold; stop() without a connect() probe."""

    keep_alive_conn_limit = 256  # cheroot: 10, so a dashboard + 16 clients would churn connections

    def __init__(self, sock: socket.socket, app, **kw):
        self._given_socket = sock
        super().__init__(sock.getsockname()[:2], app, **kw)

    def bind(self, family, type, proto=0):  # noqa: A002 - cheroot's signature
        # prepare() calls this to create the listening socket: use ours instead.
        self.socket = self._given_socket
        # Accepted sockets inherit TCP_NODELAY; without it, headers and body sent in two writes
        # meet the peer's delayed ACK (40 ms per keep-alive response).
        self.socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.bind_addr = self.resolve_real_bind_addr(self.socket)
        return self.socket

    def prepare(self):
        # cheroot adopts fd 3 as AF_INET whenever LISTEN_PID is set, whoever it was meant for.
        os.environ.pop("LISTEN_PID", None)
        super().prepare()

    def stop(self):
        # cheroot's stop() connects to its own port to wake accept(); its selector loop does not
        # need that, and on a socket unit the connection would start the service again.
        sock, self.socket = self.socket, None
        try:
            super().stop()
        finally:
            if sock is not None:
                sock.close()

    def error_log(self, msg="", level=20, traceback=False):
        if level >= logging.WARNING:
            log.log(level, "http server: %s", str(msg).strip(), exc_info=traceback)


# ---------------------------------------------------------------- file snapshots

class _FileReader:
    """A JSON file as (key, document, error), where key = (dev, inode, mtime, size).

    ``key()`` is a cheap fstat-free stat; ``read()`` parses. The parsed document is not kept:
    the app caches rendered bytes by key, which is all a warm request needs (and keeps RSS low).
    """

    def __init__(self, path: str | None):
        self.path = path

    def key(self):
        if not self.path:
            return ("none",)
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return ("missing",)
        except OSError as exc:
            return ("error", exc.errno)
        return (st.st_dev, st.st_ino, st.st_mtime_ns, st.st_size)

    def read(self):
        """→ (key, document or None when missing, error or None)."""
        if not self.path:
            return ("none",), None, None
        try:
            fd = os.open(self.path, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            return ("missing",), None, None
        except OSError as exc:
            return ("error", exc.errno), None, "cannot open %s: %s" % (self.path, exc.strerror)
        try:
            st = os.fstat(fd)
            key = (st.st_dev, st.st_ino, st.st_mtime_ns, st.st_size)
            chunks = []
            while True:
                b = os.read(fd, 1 << 20)
                if not b:
                    break
                chunks.append(b)
        except OSError as exc:
            return ("error", exc.errno), None, "cannot read %s: %s" % (self.path, exc.strerror)
        finally:
            os.close(fd)
        try:
            doc = json.loads(b"".join(chunks))
        except ValueError as exc:
            return key, None, "%s: invalid JSON: %s" % (self.path, exc)
        if not isinstance(doc, dict):
            return key, None, "%s: not a JSON object" % self.path
        return key, doc, None


# ---------------------------------------------------------------- the application

def _prefers_html(accept: str) -> bool:
    """True when the Accept header ranks text/html above application/json (curl's */* → JSON)."""
    best_html = best_json = 0.0
    for part in (accept or "").split(","):
        fields = part.strip().split(";")
        mtype = fields[0].strip().lower()
        q = 1.0
        for f in fields[1:]:
            k, _, v = f.strip().partition("=")
            if k.strip() == "q":
                try:
                    q = float(v)
                except ValueError:
                    q = 0.0
        if mtype == "text/html":
            best_html = max(best_html, q)
        elif mtype in ("application/json", "application/*"):
            best_json = max(best_json, q)
        elif mtype == "*/*":
            best_json = max(best_json, q * 0.5)  # a wildcard means "no preference": JSON
    return best_html > best_json


def _libc_trim():
    try:
        return ctypes.CDLL("libc.so.6").malloc_trim
    except (OSError, AttributeError):
        return None


_MALLOC_TRIM = _libc_trim()


def _release_memory():
    """Give the parse's freed heap back to the kernel (glibc keeps it otherwise): keeps RSS flat."""
    if _MALLOC_TRIM is not None:
        _MALLOC_TRIM(0)


class _HTTPError(Exception):
    def __init__(self, status: int, message: str, **extra):
        super().__init__(message)
        self.status, self.message, self.extra = status, message, extra


class StatusApp:
    """Request handling (CherryPy handler object). All routes are read-only."""

    def __init__(self, status_file, history_file, cors_origin="*", stale_after=86400.0,
                 clock=time.time):
        self.status_reader = _FileReader(status_file)
        self.history_reader = _FileReader(history_file)
        self.cors_origin = cors_origin
        self.stale_after = float(stale_after)
        self.clock = clock
        self._cache = {}
        self._cache_lock = threading.Lock()
        self._render_lock = threading.Lock()
        self._history_error_logged = None
        self.requests = 0
        self.in_flight = 0
        self.last_activity = time.monotonic()
        self._count_lock = threading.Lock()

    # -- data
    def _inputs(self):
        skey, status, serr = self.status_reader.read()
        if serr:
            raise _HTTPError(503, "status file unreadable or invalid", detail=serr,
                             status_file=self.status_reader.path)
        hkey, history, herr = self.history_reader.read()
        if herr and self._history_error_logged != hkey:
            self._history_error_logged = hkey
            log.warning("ignoring history: %s", herr)
        return (skey, hkey), status, history

    def _rendered(self, route, fn, *args, per_second=False):
        """Render bytes for ``route``, cached until an input file changes or output would change."""
        now = self.clock()
        keys = (self.status_reader.key(), self.history_reader.key())
        ckey = (route, keys) + ((int(now),) if per_second else ())
        with self._cache_lock:
            hit = self._cache.get(route)
            if hit and hit[0] == ckey and now < hit[1]:
                return hit[2]
        with self._render_lock:   # one render at a time: concurrent misses wait for the first
            with self._cache_lock:
                hit = self._cache.get(route)
                if hit and hit[0] == ckey and now < hit[1]:
                    return hit[2]
            keys, status, history = self._inputs()
            ckey = (route, keys) + ((int(now),) if per_second else ())
            body = fn(status, history, now, *args)
            valid = render.next_change(status, history, now, self.stale_after)
            with self._cache_lock:
                self._cache[route] = (ckey, valid, body)
            del status, history
            _release_memory()
            return body

    # -- CherryPy entry point: every path lands here
    @cherrypy.expose
    def default(self, *path, **_query):
        req, resp = cherrypy.request, cherrypy.response
        with self._count_lock:
            self.in_flight += 1
            self.requests += 1
            self.last_activity = time.monotonic()
        try:
            if self.cors_origin:
                resp.headers["Access-Control-Allow-Origin"] = self.cors_origin
            try:
                return self._route(req, resp, [p for p in path if p])
            except _HTTPError as exc:
                return self._error(resp, exc)
        finally:
            with self._count_lock:
                self.in_flight -= 1
                self.last_activity = time.monotonic()

    def _route(self, req, resp, parts):
        method = req.method
        known = (not parts or parts[0] in ("status", "metrics")
                 and (len(parts) == 1 or parts[0] == "status" and len(parts) == 2))
        if not known:
            raise _HTTPError(404, "not found", path=req.path_info)
        if method == "OPTIONS":
            resp.status = 204
            resp.headers["Allow"] = ALLOWED
            resp.headers["Access-Control-Allow-Methods"] = "GET, HEAD"
            resp.headers["Access-Control-Max-Age"] = "86400"
            return b""
        if method not in ("GET", "HEAD"):
            resp.headers["Allow"] = ALLOWED
            raise _HTTPError(405, "method not allowed (read-only service)", method=method)
        resp.headers["Cache-Control"] = "no-cache"
        if not parts:
            resp.headers["Vary"] = "Accept"
            fmt = req.params.get("format") if isinstance(req.params.get("format"), str) else None
            if fmt == "html" or (fmt != "json" and _prefers_html(req.headers.get("Accept", ""))):
                body = self._rendered("html", lambda s, h, now: render.render_html(
                    s, h, now, self.stale_after).encode(), per_second=True)
                return self._ok(resp, HTML_TYPE, body)
            body = self._rendered("root", lambda s, h, now: _dumps(render.root_document(s, h)))
            return self._ok(resp, JSON_TYPE, body)
        if parts[0] == "metrics":
            body = self._rendered("metrics", lambda s, h, now: render.render_metrics(
                s, h, now, self.stale_after).encode())
            return self._ok(resp, METRICS_TYPE, body)
        if len(parts) == 1:
            body = self._rendered("status", lambda s, h, now: _dumps(render.status_document(
                s, h, now, self.stale_after)))
            return self._ok(resp, JSON_TYPE, body)
        keys, status, history = self._inputs()
        doc = render.device_document(status, history, parts[1], self.clock(), self.stale_after)
        if doc is None:
            raise _HTTPError(404, "unknown device", device=parts[1])
        return self._ok(resp, JSON_TYPE, _dumps(doc))

    @staticmethod
    def _ok(resp, ctype, body: bytes) -> bytes:
        resp.headers["Content-Type"] = ctype
        resp.headers["Content-Length"] = str(len(body))
        return body

    def _error(self, resp, exc: _HTTPError) -> bytes:
        req = cherrypy.request
        resp.status = exc.status
        if exc.status == 503:
            resp.headers["Retry-After"] = "5"
        log.warning("%s %s %s: %d %s%s", client_address(req.remote.ip), req.method,
                    req.path_info, exc.status, exc.message,
                    (" (%s)" % exc.extra["detail"]) if "detail" in exc.extra else "")
        body = {"error": exc.message, "status": exc.status}
        body.update(exc.extra)
        return self._ok(resp, JSON_TYPE, _dumps(body))


def _dumps(doc) -> bytes:
    return json.dumps(doc, separators=(",", ":"), allow_nan=False, default=str).encode()


def _error_page(status, message, traceback, version):
    """CherryPy's own errors (e.g. a malformed request): JSON, never a traceback."""
    code = str(status).split(" ", 1)[0]
    cherrypy.response.headers["Content-Type"] = JSON_TYPE
    return json.dumps({"error": str(message), "status": int(code) if code.isdigit() else 500})


def _unexpected_error():
    """An exception in a handler: one log line, a JSON 500, no traceback to the client."""
    exc = sys.exc_info()[1]
    req = cherrypy.request
    log.error("%s %s %s: 500 internal error: %s: %s", client_address(req.remote.ip), req.method,
              req.path_info, type(exc).__name__, exc)
    body = b'{"error":"internal error","status":500}'
    resp = cherrypy.response
    resp.status = 500
    resp.headers["Content-Type"] = JSON_TYPE
    resp.headers["Content-Length"] = str(len(body))
    resp.body = [body]


def make_wsgi_app(app: StatusApp):
    """The CherryPy application (a WSGI callable) around ``app``; not mounted in cherrypy.tree."""
    conf = {"/": {
        "request.show_tracebacks": False,
        "request.show_mismatched_params": False,
        "request.methods_with_bodies": (),  # never read request bodies: nothing can be posted
        "request.error_response": _unexpected_error,
        "error_page.default": _error_page,
        "tools.encode.on": False,
        "tools.trailing_slash.on": False,
        "response.headers.server": "ethoscope-backup",
        "log.screen": False,
        "log.access_file": "",
        "log.error_file": "",
    }}
    cp_app = cherrypy.Application(app, script_name="", config=conf)
    cp_app.log.screen = False
    cp_app.log.access_log.propagate = False
    cp_app.log.error_log.propagate = False
    return cp_app


# ---------------------------------------------------------------- server lifecycle

class StatusServer:
    """The status service as an object: ``start()`` serves in a thread, ``stop()`` ends it.

    Used by :func:`serve` and usable by a ``daemon`` mode next to a backup loop. Give it a socket
    (from systemd) or a ``listen`` address (``"ADDR:PORT"``); :class:`ServeError` if binding fails.
    """

    def __init__(self, status_file, history_file, listen=None, sock=None, cors_origin="*",
                 stale_after=86400.0, threads=4):
        self.app = StatusApp(status_file, history_file, cors_origin=cors_origin,
                             stale_after=stale_after)
        self._listen = listen
        self._sock = sock
        self._threads = threads
        self._server = None
        self._thread = None

    @property
    def address(self) -> tuple:
        """(host, port) actually listened on."""
        return self._sock.getsockname()[:2] if self._sock else None

    def start(self) -> None:
        if self._sock is None:
            self._sock = bind_socket(self._listen)
        self._server = _Server(self._sock, make_wsgi_app(self.app), numthreads=self._threads,
                               server_name="ethoscope-backup", request_queue_size=socket.SOMAXCONN,
                               timeout=10, shutdown_timeout=2)
        self._server.prepare()
        self._thread = threading.Thread(target=self._serve, name="status-http", daemon=True)
        self._thread.start()

    def _serve(self):
        try:
            self._server.serve()
        except Exception:  # pragma: no cover - logged, the main loop notices the dead thread
            log.exception("status server stopped")

    @property
    def running(self) -> bool:
        return bool(self._thread and self._thread.is_alive())

    def idle_for(self) -> float:
        """Seconds since the last request finished (0 while one is in progress)."""
        if self.app.in_flight:
            return 0.0
        return time.monotonic() - self.app.last_activity

    def stop(self, timeout=5.0) -> None:
        if self._server is not None:
            self._server.stop()
        if self._thread is not None:
            self._thread.join(timeout)
        self._server = None
        self._sock = None


def _setup_logging():
    if not logging.getLogger().handlers and not log.handlers:
        h = logging.StreamHandler(sys.stderr)
        h.setFormatter(logging.Formatter("ethoscope-backup serve: %(message)s"))
        log.addHandler(h)
        log.setLevel(logging.INFO)
        log.propagate = False


def serve(status_file, history_file, listen=None, cors_origin="*", idle_exit=300.0,
          stale_after=86400.0) -> int:
    """Run the status service until SIGTERM/SIGINT or ``idle_exit`` seconds without requests.

    Socket-activated when systemd passed us a socket, else binds ``listen`` (default
    ``0.0.0.0:8093``). Returns the exit code: 0 after a clean stop, 2 when it cannot listen.
    ``idle_exit`` of 0/None disables the idle exit.
    """
    _setup_logging()
    stop = threading.Event()
    signals = {}

    def on_signal(_signum, _frame):
        stop.set()

    # handlers first: a SIGTERM right after the first answer must still stop us cleanly
    for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        try:
            signals[s] = signal.signal(s, on_signal)
        except ValueError:  # not the main thread
            pass
    try:
        sock = activated_socket()
        activated = sock is not None
        server = StatusServer(status_file, history_file, listen=listen, sock=sock,
                              cors_origin=cors_origin, stale_after=stale_after)
        server.start()
    except ServeError as exc:
        sys.stderr.write("ethoscope-backup serve: %s\n" % exc)
        sys.stderr.flush()
        return 2
    notify = Notifier().send
    where = format_address(server.address)
    how = "socket-activated" if activated else "bound"
    log.info("serving %s on %s (%s)", status_file, where, how)
    notify("READY=1\nSTATUS=Serving %s on %s (%s)" % (status_file, where, how))
    idle = float(idle_exit or 0)
    reason = "stopped"
    last_count = 0
    try:
        while not stop.is_set():
            wait = 1.0
            if idle > 0:
                left = idle - server.idle_for()
                if left <= 0:
                    reason = "idle for %gs" % idle
                    break
                wait = min(wait, max(0.01, left))
            stop.wait(wait)
            if not server.running:
                reason = "server thread died"
                break
            count = server.app.requests
            if count != last_count:
                last_count = count
                notify("STATUS=Serving on %s (%s), %d requests" % (where, how, count))
    finally:
        notify("STOPPING=1\nSTATUS=Stopping: %s" % reason)
        server.stop()
        for s, old in signals.items():
            signal.signal(s, old)
    log.info("exiting: %s (%d requests)", reason, server.app.requests)
    return 0 if reason != "server thread died" else 1
