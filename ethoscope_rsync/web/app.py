"""The status service's answers: ``respond(method, path, headers)`` → ``Response``, no sockets.

Read-only routes over the status files (rendered by :mod:`ethoscope_rsync.render.upstream`):

- ``/``: ``{"status", "last_backup"}`` as JSON, or the HTML page when the client prefers
  ``text/html`` (a browser); ``?format=html|json`` chooses explicitly;
- ``/status``: every device, in the upstream tool's shape; ``/status/<key>``: one device
  (machine id, ``ETHOSCOPE_004``, ``004`` or ``4``);
- ``/metrics``: Prometheus text.

``GET`` and ``HEAD`` answer, ``OPTIONS`` describes (CORS preflight), anything else is 405.
Answers carry a strong ``ETag`` (``If-None-Match`` → 304) and are gzip-encoded when the client
accepts it; both are prepared once per status change (:mod:`ethoscope_rsync.web.documents`).
Every answer, refusals included, says ``X-Content-Type-Options: nosniff``; an error answer names
no file and quotes nothing the client sent or the system said (those go to the journal).
The WSGI adapter (:mod:`ethoscope_rsync.web.adapter`) only adapts this to HTTP.
"""
from __future__ import annotations

import http
import json
import logging
import os
import time
from typing import Mapping, NamedTuple
from urllib.parse import unquote_plus

from ethoscope_rsync.render import upstream as render
from ethoscope_rsync.render import verdict
from ethoscope_rsync.web.clientlog import ClientLog
from ethoscope_rsync.web.documents import Documents, StatusUnavailable, dumps, prepare

JSON_TYPE = "application/json"
METRICS_TYPE = "text/plain; version=0.0.4; charset=utf-8"
HTML_TYPE = "text/html; charset=utf-8"
# a file name a device sent may hold bytes that are not UTF-8 (kept as surrogates): shown as \udcXX
TEXT_ERRORS = "backslashreplace"
ALLOW = "GET, HEAD, OPTIONS"
MAX_TARGET = 8192       # path + query; the connection gate already refuses longer request lines
NOSNIFF = ("X-Content-Type-Options", "nosniff")   # browsers take the Content-Type as given
QUIET_404 = ("/favicon.ico", "/apple-touch-icon.png", "/apple-touch-icon-precomposed.png", "/robots.txt")

log = logging.getLogger("ethoscope_rsync.web")


class Response(NamedTuple):
    status: int
    headers: list           # [(name, value)], str
    body: bytes


class Named(NamedTuple):
    name: str


def problem_body(status: int, message: str) -> bytes:
    """The JSON body of an error answer: what went wrong in a few fixed words, and the code."""
    return json.dumps({"error": message, "status": status}).encode()


def refusal(status: int, phrase: str | None = None) -> bytes:
    """A whole HTTP/1.1 answer refusing a request before it reached the app (the connection gate's
    and cheroot's refusals): JSON, nosniff, and the connection closes after it."""
    phrase = phrase or http.HTTPStatus(status).phrase
    body = problem_body(status, phrase.lower())
    head = ("HTTP/1.1 %d %s\r\nContent-Type: %s\r\n%s: %s\r\nContent-Length: %d\r\nConnection: close\r\n\r\n"
            % (status, phrase, JSON_TYPE, NOSNIFF[0], NOSNIFF[1], len(body)))
    return head.encode("latin-1") + body


# ---------------------------------------------------------------- negotiation (pure)

def _q(params) -> float:
    for p in params:
        k, _, v = p.partition("=")
        if k.strip().lower() == "q":
            try:
                q = float(v.strip())
            except ValueError:
                return 0.0
            return q if 0.0 <= q <= 1.0 else 0.0
    return 1.0


def _weights(header: str) -> dict:
    """``"a;q=0.5, b"`` → ``{"a": 0.5, "b": 1.0}`` (lower-cased; the best q of repeats wins)."""
    out: dict = {}
    for item in (header or "").split(","):
        name, *params = item.split(";")
        name = name.strip().lower()
        if name:
            out[name] = max(out.get(name, 0.0), _q(params))
    return out


def prefers_html(accept: str) -> bool:
    """True when ``Accept`` ranks text/html above JSON; ``*/*`` alone (curl) means JSON."""
    w = _weights(accept)
    html = w.get("text/html", 0.0)
    as_json = max(w.get("application/json", 0.0), w.get("application/*", 0.0), w.get("*/*", 0.0) * 0.5)
    return html > as_json


def accepts_gzip(accept_encoding: str) -> bool:
    w = _weights(accept_encoding)
    q = w.get("gzip", w.get("x-gzip", w.get("*", 0.0)))
    return q > 0.0


def etag_matches(if_none_match: str, etag: str) -> bool:
    """``If-None-Match`` against one strong ETag, with the weak comparison RFC 9110 asks for."""
    text = (if_none_match or "").strip()
    if text == "*":
        return True
    return any(t.strip().removeprefix("W/") == etag for t in text.split(","))


def query_param(query: str, name: str):
    """The first value of ``name`` in a query string (``+`` and ``%XX`` decoded), else None."""
    for item in (query or "").split("&"):
        key, sep, value = item.partition("=")
        if key == name:
            return unquote_plus(value) if sep else ""
    return None


def route_of(parts: list):
    """Path segments → ``"root"``, ``"status"``, ``"device"``, ``"metrics"``, or None (404)."""
    if not parts:
        return "root"
    if parts == ["metrics"]:
        return "metrics"
    if parts[0] == "status" and len(parts) <= 2:
        return "status" if len(parts) == 1 else "device"
    return None


# ---------------------------------------------------------------- the application

class _Problem(Exception):
    """An error answer: ``message`` goes to the client, ``detail`` (paths, system errors) only to the log."""

    def __init__(self, status: int, message: str, headers=(), detail: str = ""):
        super().__init__(message)
        self.status, self.message, self.headers, self.detail = status, message, list(headers), detail


class StatusApp:
    """The routes over ``status_file`` and ``history_file``; ``respond`` is all a server calls."""

    def __init__(self, status_file, history_file, *, cors_origin: str, stale_after: float, horizon_days: float,
                 clock=time.time, logger=log, offsite_file=None, overdue_after: float = 0.0, pauses_file=None):
        self.stale_after = float(stale_after)
        self.overdue_after = float(overdue_after)    # [status] overdue_after: the verdict's overdue
        self.horizon_days = float(horizon_days)       # [alert] disk_horizon: a destination full sooner is flagged
        self.cors_origin = cors_origin
        self.clients = ClientLog(logger)
        self.documents = Documents(status_file, history_file, self.stale_after, clock,
                                   on_history_error=lambda m: logger.warning("ignoring history: %s", m),
                                   offsite_file=offsite_file, overdue_after=self.overdue_after,
                                   pauses_file=pauses_file)
        self.status_file = status_file
        self.inventory_file = (os.path.join(os.path.dirname(history_file), "inventory.sqlite")   # the pass's
                               if history_file else None)

    # -- documents (bytes prepared once per change)
    def _root(self, status, history, now):
        return prepare(dumps(verdict.root_document(status, history, now, self.stale_after, self.overdue_after)),
                       JSON_TYPE)

    def _html(self, status, history, now):
        return prepare(render.render_html(status, history, now, self.stale_after, horizon_days=self.horizon_days,
                                          overdue_after=self.overdue_after).encode(errors=TEXT_ERRORS), HTML_TYPE)

    def _status(self, status, history, now):
        return prepare(dumps(render.status_document(status, history, now, self.stale_after, self.horizon_days)),
                       JSON_TYPE)

    def _metrics(self, status, history, now):
        v = render.view(status, history, now, self.stale_after)       # read once for both
        text = (render.render_metrics(status, history, now, self.stale_after, self.horizon_days, v)
                + verdict.verdict_metrics(verdict.judged(status, history, now, self.stale_after,
                                                         self.overdue_after, v)))
        return prepare(text.encode(errors=TEXT_ERRORS), METRICS_TYPE)

    def _directory(self, status, history, now):
        """The devices' ids and names (for ``find_device``): those of /status, without their files."""
        devices = render.view(status, history, now, self.stale_after, files=False).devices
        return {k: Named(d.name) for k, d in devices.items()}

    def _device(self, key):
        def build(status, history, now):
            from ethoscope_rsync.web.newest import with_newest    # (sqlite3: not for the other answers' cold start)
            doc = render.device_document(status, with_newest(history, key, self.inventory_file), key, now,
                                         self.stale_after)
            return None if doc is None else prepare(dumps(doc), JSON_TYPE)
        return build

    # -- requests
    def respond(self, method: str, path: str, headers: Mapping, query: str = "",
                client: str = "-") -> Response:
        """One request. ``path`` is decoded (as WSGI's PATH_INFO), ``query`` is raw."""
        h = {str(k).lower(): str(v) for k, v in headers.items()}
        try:
            answer = self._route(method, path, query, h)
        except _Problem as p:
            answer = self._problem(p, method, path, client)
        answer.headers.append(NOSNIFF)
        return answer

    def _route(self, method, path, query, h) -> Response:
        if len(path) + len(query) > MAX_TARGET:
            raise _Problem(414, "request target too long")
        parts = [p for p in path.split("/") if p]
        route = route_of(parts)
        if route is None and not (method == "OPTIONS" and path == "*"):
            raise _Problem(404, "not found")
        if method == "OPTIONS":
            return Response(204, self._cors([("Allow", ALLOW), ("Access-Control-Allow-Methods", "GET, HEAD"),
                                             ("Access-Control-Allow-Headers", "If-None-Match"),
                                             ("Access-Control-Max-Age", "86400")]), b"")
        if method not in ("GET", "HEAD"):
            raise _Problem(405, "method not allowed (read-only service)", [("Allow", ALLOW)])
        try:
            rep = self._document(route, parts, query, h)
        except StatusUnavailable as exc:
            raise _Problem(503, "status file unreadable or invalid", [("Retry-After", "5")],
                           detail=str(exc)) from None
        return self._representation(rep, method, h, "Accept, Accept-Encoding" if route == "root" else "Accept-Encoding")

    def _document(self, route, parts, query, h):
        docs = self.documents
        if route == "root":
            fmt = query_param(query, "format")
            if fmt == "html" or (fmt != "json" and prefers_html(h.get("accept", ""))):
                return docs.get("html", self._html, per_second=True)
            return docs.get("root", self._root, period=60.0)
        if route == "metrics":
            return docs.get("metrics", self._metrics)
        if route == "status":
            return docs.get("status", self._status)
        device = render.find_device(docs.get("directory", self._directory), parts[1])
        rep = None if device is None else docs.get(("device", device), self._device(device))
        if rep is None:
            raise _Problem(404, "unknown device")
        return rep

    def _representation(self, rep, method, h, vary) -> Response:
        gz = rep.gzip_body is not None and accepts_gzip(h.get("accept-encoding", ""))
        body, etag = (rep.gzip_body, rep.gzip_etag) if gz else (rep.body, rep.etag)
        headers = self._cors([("Cache-Control", "no-cache"), ("Vary", vary), ("ETag", etag)])
        if etag_matches(h.get("if-none-match", ""), etag):
            return Response(304, headers, b"")
        headers.append(("Content-Type", rep.content_type))
        if gz:
            headers.append(("Content-Encoding", "gzip"))
        headers.append(("Content-Length", str(len(body))))
        return Response(200, headers, b"" if method == "HEAD" else body)

    def _cors(self, headers: list) -> list:
        if self.cors_origin:
            headers.append(("Access-Control-Allow-Origin", self.cors_origin))
        return headers

    def _problem(self, p: _Problem, method, path, client) -> Response:
        if not (p.status == 404 and path in QUIET_404):      # a browser's own guesses: not worth a warning
            self.clients.warning("%s %s %s: %d %s%s", client, method, path, p.status, p.message,
                                 " (%s)" % p.detail if p.detail else "")
        body = problem_body(p.status, p.message)
        headers = self._cors(p.headers + [("Content-Type", JSON_TYPE), ("Content-Length", str(len(body)))])
        return Response(p.status, headers, b"" if method == "HEAD" else body)
