"""The WSGI adapter (PEP 3333), without sockets: it passes requests to ``StatusApp.respond`` and
its answers back unchanged; a failure of the app is a JSON 500 and one escaped log line."""
import io
import json
import logging
import sys

import pytest

from ethoscope_rsync.web.adapter import make_wsgi_app
from ethoscope_rsync.web.app import Response, StatusApp
from tests.unit.web.examples import write_example


def call(wsgi, method="GET", path="/", query="", names=None, **headers):
    """→ (status line, {lower-case header name: value}, body); ``names`` gets the names as sent."""
    environ = {"REQUEST_METHOD": method, "PATH_INFO": path, "QUERY_STRING": query, "SCRIPT_NAME": "",
               "SERVER_NAME": "x", "SERVER_PORT": "8093", "SERVER_PROTOCOL": "HTTP/1.1",
               "ACTUAL_SERVER_PROTOCOL": "HTTP/1.1", "REMOTE_ADDR": "::ffff:10.1.2.3", "REMOTE_PORT": "5",
               "wsgi.url_scheme": "http", "wsgi.input": io.BytesIO(), "wsgi.errors": sys.stderr,
               "wsgi.version": (1, 0), "wsgi.multithread": True, "wsgi.multiprocess": False,
               "wsgi.run_once": False, "HTTP_HOST": "node:8093"}
    environ.update({"HTTP_" + k.upper(): v for k, v in headers.items()})
    seen = {}

    def start_response(status, header_list, exc_info=None):
        seen["status"], seen["headers"] = status, header_list
        if names is not None:
            names.extend(name for name, _ in header_list)

    out = wsgi(environ, start_response)
    try:
        body = b"".join(out)
    finally:
        getattr(out, "close", lambda: None)()
    return seen["status"], {k.lower(): v for k, v in seen["headers"]}, body


@pytest.fixture
def app(tmp_path):
    write_example(tmp_path / "status.json", tmp_path / "history.json")
    return StatusApp(tmp_path / "status.json", tmp_path / "history.json", cors_origin="*", stale_after=86400.0,
                     horizon_days=14.0)


def test_answers_pass_through_unchanged(app):
    wsgi = make_wsgi_app(app)
    for method, path, query, headers in (("GET", "/status", "", {}), ("GET", "/", "format=html", {}),
                                         ("HEAD", "/metrics", "", {}), ("DELETE", "/status", "", {}),
                                         ("GET", "/status/2", "", {"Accept-Encoding": "gzip"}),
                                         ("GET", "/nope", "", {})):
        expected = app.respond(method, path, headers, query)
        status, got, body = call(wsgi, method, path, query, **{k.replace("-", "_"): v for k, v in headers.items()})
        assert int(status.split()[0]) == expected.status, path
        assert body == expected.body, path
        for name, value in expected.headers:
            assert got[name.lower()] == value, (path, name)
        assert got["x-content-type-options"] == "nosniff"


def test_not_modified_has_no_body_or_type(app):
    wsgi = make_wsgi_app(app)
    etag = dict((k.lower(), v) for k, v in app.respond("GET", "/status", {}).headers)["etag"]
    status, headers, body = call(wsgi, path="/status", If_None_Match=etag)
    assert status.startswith("304") and body == b""
    assert "content-type" not in headers and "content-length" not in headers


def test_handler_failure_is_a_json_500_and_one_escaped_line(app, journal, monkeypatch):
    def broken(*args, **kwargs):
        raise ValueError("bad\nthing")

    monkeypatch.setattr(app, "respond", broken)
    status, headers, body = call(make_wsgi_app(app), path="/status\nX")
    assert status == "500 Internal Server Error"
    assert json.loads(body) == {"error": "internal error", "status": 500}
    assert headers["content-type"] == "application/json" and headers["x-content-type-options"] == "nosniff"
    assert headers["content-length"] == str(len(body))
    assert journal.messages(logging.WARNING) == [
        "10.1.2.3 GET /status\\x0aX: 500 internal error: ValueError: bad\\x0athing"]


def test_path_is_read_back_as_utf8(app, monkeypatch):
    """PATH_INFO holds the %-decoded bytes as Latin-1 (PEP 3333): the app gets the UTF-8 text, and
    bytes that are not UTF-8 as surrogates (its logs escape them); a query that is not UTF-8 is
    the app's to read, not a refusal."""
    seen = []
    monkeypatch.setattr(app, "respond", lambda *a: seen.append(a) or Response(204, [], b""))
    wsgi = make_wsgi_app(app)
    call(wsgi, path="/status/\u00e9".encode("utf-8").decode("latin-1"))
    call(wsgi, path="/status/\xff")
    call(wsgi, path="/status", query="a=%ff")
    assert [a[1] for a in seen] == ["/status/\u00e9", "/status/\udcff", "/status"]
    assert seen[2][3] == "a=%ff"


def test_undecodable_path_and_query_get_json_answers(app):
    status, headers, body = call(make_wsgi_app(app), path="/status/\xff")
    assert status == "404 Not Found" and json.loads(body) == {"error": "unknown device", "status": 404}
    status, headers, body = call(make_wsgi_app(app), path="/status", query="a=%ff")
    assert status == "200 OK" and headers["content-type"] == "application/json"


def test_client_address_and_query_reach_the_app(app, monkeypatch):
    seen = []
    monkeypatch.setattr(app, "respond", lambda *a: seen.append(a) or Response(204, [], b""))
    call(make_wsgi_app(app), "GET", "/status", "format=json&x=1", Accept="text/html")
    method, path, headers, query, client = seen[0]
    assert (method, path, query, client) == ("GET", "/status", "format=json&x=1", "10.1.2.3")
    assert headers["accept"] == "text/html" and headers["host"] == "node:8093"


def test_header_names_as_the_app_spells_them(app):
    names = []
    call(make_wsgi_app(app), path="/status", names=names)
    assert "ETag" in names and "Access-Control-Allow-Origin" in names and "Cache-Control" in names
    assert "X-Content-Type-Options" in names


def test_no_body_for_204_and_head(app):
    status, headers, body = call(make_wsgi_app(app), "OPTIONS", "/status")
    assert status == "204 No Content" and body == b""
    status, headers, body = call(make_wsgi_app(app), "HEAD", "/status")
    assert status == "200 OK" and body == b"" and int(headers["content-length"]) > 1000
