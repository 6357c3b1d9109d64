"""The status app without sockets: call ``respond``, check status, headers and body.

The status and history files are written by the real store from an example pass
(bench/status_fixture.py) and used as opaque files: what is in them is render's business; these
tests check what the web layer adds (routes, negotiation, ETags, gzip, caching, errors, logs).
"""
import gzip
import json
import logging
import os
import subprocess

import pytest

from tests.fixtures.status import B, NOW, build, example_pass
from tests.fixtures.status import write_json
from ethoscope_rsync.render import upstream as render
from ethoscope_rsync.web.app import StatusApp, accepts_gzip, etag_matches, prefers_html, query_param, refusal
from ethoscope_rsync.web.documents import prepare
from tests.unit.web.examples import write_example

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(HERE)))
DAY = 86400.0
DEVICE_2 = B


class Clock:
    def __init__(self, now=NOW):
        self.now = now

    def __call__(self):
        return self.now


@pytest.fixture
def files(tmp_path):
    status, history = tmp_path / "status.json", tmp_path / "history.json"
    write_example(status, history)
    return status, history


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def app(files, clock):
    return StatusApp(files[0], files[1], clock=clock, cors_origin="*", stale_after=86400.0, horizon_days=14.0)


def hdr(response, name):
    found = [v for k, v in response.headers if k.lower() == name.lower()]
    assert len(found) <= 1, response.headers
    return found[0] if found else None


def get(app, path, query="", **headers):
    return app.respond("GET", path, {k.replace("_", "-"): v for k, v in headers.items()}, query)


# ---------------------------------------------------------------- negotiation, pure

@pytest.mark.parametrize("accept, html", [
    ("text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8", True),   # a browser
    ("*/*", False), ("", False), ("application/json", False),
    ("text/html;q=0.5, application/json", False), ("text/html, application/json;q=0.5", True),
    ("text/html;q=0", False), ("TEXT/HTML", True), ("text/html;q=bogus", False)])
def test_prefers_html(accept, html):
    assert prefers_html(accept) is html


@pytest.mark.parametrize("value, yes", [
    ("gzip, deflate, br", True), ("gzip;q=0", False), ("identity", False), ("", False),
    ("*", True), ("*;q=0", False), ("deflate, *;q=0.1", True), ("x-gzip", True), ("GZIP", True),
    ("*, gzip;q=0", False)])
def test_accepts_gzip(value, yes):
    assert accepts_gzip(value) is yes


@pytest.mark.parametrize("header, match", [
    ('"abc"', True), ('W/"abc"', True), ('"x", "abc"', True), ("*", True), ('"abcd"', False),
    ("", False), ("abc", False), ('"ABC"', False)])
def test_etag_matches(header, match):
    assert etag_matches(header, '"abc"') is match


def test_query_param():
    assert query_param("format=html", "format") == "html"
    assert query_param("a=1&format=json&format=html", "format") == "json"
    assert query_param("format", "format") == "" and query_param("", "format") is None
    assert query_param("format=h%74ml+x", "format") == "html x"


# ---------------------------------------------------------------- routes

def test_status_document(app):
    r = get(app, "/status")
    assert r.status == 200 and hdr(r, "Content-Type") == "application/json"
    assert hdr(r, "Content-Length") == str(len(r.body))
    assert hdr(r, "Cache-Control") == "no-cache" and hdr(r, "Vary") == "Accept-Encoding"
    assert hdr(r, "Access-Control-Allow-Origin") == "*"
    with open(app.documents.status.path) as s, open(app.documents.history.path) as h:
        expected = render.status_document(json.load(s), json.load(h), NOW, DAY, horizon_days=14.0)
    assert json.loads(r.body) == json.loads(json.dumps(expected))


def test_root_json_or_html(app):
    as_json = get(app, "/", Accept="*/*")
    assert as_json.status == 200 and json.loads(as_json.body)["status"] in ("idle", "running")
    assert hdr(as_json, "Vary") == "Accept, Accept-Encoding"
    browser = get(app, "/", Accept="text/html,*/*;q=0.8")
    assert hdr(browser, "Content-Type") == "text/html; charset=utf-8" and browser.body.startswith(b"<!DOCTYPE html>")
    assert hdr(get(app, "/", "format=html"), "Content-Type").startswith("text/html")
    assert hdr(get(app, "/", "format=json", Accept="text/html"), "Content-Type") == "application/json"


def test_device_forms_and_unknown(app):
    bodies = {get(app, "/status/" + key).body for key in (DEVICE_2, "ETHOSCOPE_002", "002", "2")}
    assert len(bodies) == 1 and json.loads(bodies.pop())["id"] == DEVICE_2
    r = get(app, "/status/ETHOSCOPE_099")
    # the key asked for is not echoed (a page showing the answer would show what a client made up)
    assert r.status == 404 and json.loads(r.body) == {"error": "unknown device", "status": 404}
    assert b"099" not in r.body and hdr(r, "X-Content-Type-Options") == "nosniff"
    assert get(app, "/status/" + "0" * 7000 + "x").status == 404
    assert get(app, "/status/" + "9" * 5000).status == 404


def test_metrics(app):
    r = get(app, "/metrics")
    assert r.status == 200 and hdr(r, "Content-Type") == "text/plain; version=0.0.4; charset=utf-8"
    assert b"# TYPE ethoscope_backup_stale_devices gauge" in r.body


@pytest.mark.parametrize("path", ["/nope", "/status/a/b", "/metrics/x", "/../etc/passwd", "/index.html"])
def test_unknown_paths(app, path):
    r = get(app, path)
    assert r.status == 404 and json.loads(r.body) == {"error": "not found", "status": 404}


def test_methods(app):
    for method in ("POST", "PUT", "DELETE", "PATCH", "TRACE", "CONNECT"):
        r = app.respond(method, "/status", {})
        assert r.status == 405 and hdr(r, "Allow") == "GET, HEAD, OPTIONS", method
    r = app.respond("OPTIONS", "/status", {"Origin": "http://node"})
    assert (r.status, r.body) == (204, b"") and hdr(r, "Access-Control-Allow-Methods") == "GET, HEAD"
    assert hdr(r, "Access-Control-Allow-Headers") == "If-None-Match"   # a poll may revalidate by hand
    assert app.respond("OPTIONS", "*", {}).status == 204
    head, full = app.respond("HEAD", "/status", {}), get(app, "/status")
    assert head.status == 200 and head.body == b"" and head.headers == full.headers


def test_every_answer_says_nosniff(app, tmp_path):
    etag = hdr(get(app, "/status"), "ETag")
    answers = [get(app, "/"), get(app, "/", Accept="text/html"), get(app, "/status"), get(app, "/metrics"),
               get(app, "/status/2"), get(app, "/status", If_None_Match=etag), get(app, "/nope"),
               get(app, "/status/ETHOSCOPE_099"), app.respond("POST", "/status", {}),
               app.respond("OPTIONS", "/status", {}), app.respond("HEAD", "/status", {}),
               get(app, "/status/" + "x" * 9000)]
    (tmp_path / "bad.json").write_text("{")
    answers.append(get(StatusApp(tmp_path / "bad.json", None, cors_origin="", stale_after=1.0, horizon_days=1.0),
                       "/status"))
    assert sorted({a.status for a in answers}) == [200, 204, 304, 404, 405, 414, 503]
    for a in answers:
        assert hdr(a, "X-Content-Type-Options") == "nosniff", a


def test_refusal_is_a_whole_json_answer():
    answer = refusal(431, "Request Header Fields Too Large")
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.split(b"\r\n") == [b"HTTP/1.1 431 Request Header Fields Too Large", b"Content-Type: application/json",
                                   b"X-Content-Type-Options: nosniff", b"Content-Length: %d" % len(body),
                                   b"Connection: close"]
    assert json.loads(body) == {"error": "request header fields too large", "status": 431}
    assert refusal(505).startswith(b"HTTP/1.1 505 HTTP Version Not Supported\r\n")


def test_long_target_414(app):
    assert get(app, "/status/" + "x" * 9000).status == 414
    assert get(app, "/", "q=" + "x" * 9000).status == 414


def test_no_cors_when_disabled(files):
    r = StatusApp(files[0], files[1], cors_origin="", stale_after=86400.0, horizon_days=14.0).respond("GET", "/", {})
    assert hdr(r, "Access-Control-Allow-Origin") is None


# ---------------------------------------------------------------- ETag, 304, gzip

def test_etag_and_304(app):
    first = get(app, "/status")
    etag = hdr(first, "ETag")
    assert etag.startswith('"') and etag.endswith('"') and len(etag) > 10
    for value in (etag, "W/" + etag, '"other", ' + etag, "*"):
        r = get(app, "/status", If_None_Match=value)
        assert (r.status, r.body) == (304, b""), value
        assert hdr(r, "ETag") == etag and hdr(r, "Content-Length") is None
        assert len(repr(r.headers)) < 300
    assert get(app, "/status", If_None_Match='"stale"').status == 200
    for path in ("/", "/metrics", "/status/2"):
        tag = hdr(get(app, path), "ETag")
        assert get(app, path, If_None_Match=tag).status == 304, path


def test_gzip(app):
    plain = get(app, "/status")
    packed = get(app, "/status", Accept_Encoding="gzip, deflate")
    assert hdr(packed, "Content-Encoding") == "gzip" and hdr(plain, "Content-Encoding") is None
    assert gzip.decompress(packed.body) == plain.body
    assert len(packed.body) < len(plain.body) / 3
    assert hdr(packed, "Content-Length") == str(len(packed.body))
    assert hdr(packed, "ETag") != hdr(plain, "ETag")
    assert get(app, "/status", Accept_Encoding="gzip", If_None_Match=hdr(packed, "ETag")).status == 304
    assert get(app, "/status", If_None_Match=hdr(packed, "ETag")).status == 200   # another representation
    assert prepare(b'{"status":"idle","last_backup":""}', "application/json").gzip_body is None   # not worth it


def test_etag_survives_a_restart_and_follows_the_file(files, clock):
    app = StatusApp(files[0], files[1], clock=clock, cors_origin="*", stale_after=86400.0, horizon_days=14.0)
    tag = hdr(get(app, "/status"), "ETag")
    app = StatusApp(files[0], files[1], clock=clock, cors_origin="*", stale_after=86400.0, horizon_days=14.0)
    assert hdr(get(app, "/status"), "ETag") == tag
    write_json(files[0], build(example_pass(running=True), finish=False)[0])   # another state
    assert hdr(get(app, "/status"), "ETag") != tag


# ---------------------------------------------------------------- caching

def test_prepared_once_per_change(app, files):
    get(app, "/status")
    builds = app.documents.builds
    for _ in range(5):
        get(app, "/status", Accept_Encoding="gzip")
        get(app, "/status", If_None_Match='"x"')
    assert app.documents.builds == builds
    os.utime(files[0], ns=(1, 1))   # same bytes, another mtime: a new version of the file
    get(app, "/status")
    assert app.documents.builds == builds + 1


def test_rebuilt_when_output_changes_by_itself(app, files, clock):
    with open(files[0]) as s, open(files[1]) as h:
        flip = render.next_change(json.load(s), json.load(h), NOW, DAY)
    assert NOW < flip < float("inf")
    get(app, "/metrics")
    builds = app.documents.builds
    clock.now = flip - 1
    get(app, "/metrics")
    assert app.documents.builds == builds
    clock.now = flip + 1
    get(app, "/metrics")
    assert app.documents.builds == builds + 1


def test_html_at_most_once_a_second(app, clock):
    get(app, "/", "format=html")
    builds = app.documents.builds
    clock.now += 0.5 - (clock.now % 1)
    get(app, "/", "format=html")
    assert app.documents.builds == builds
    clock.now += 1
    get(app, "/", "format=html")
    assert app.documents.builds == builds + 1


# ---------------------------------------------------------------- bad files, missing files

def test_missing_files(tmp_path):
    app = StatusApp(tmp_path / "none.json", tmp_path / "nohistory.json", cors_origin="*", stale_after=86400.0,
                    horizon_days=14.0)
    root = json.loads(get(app, "/").body)
    assert root["status"] == "idle" and root["last_backup"] == "" and root["verdict"]["level"] == "unknown"
    assert json.loads(get(app, "/status").body)["devices"] == {}


@pytest.mark.parametrize("content", ['{"devices": {"x": ', "[1, 2]", "\xff\xfe"])
def test_bad_status_file_503_cached(tmp_path, content, journal):
    status = tmp_path / "status.json"
    status.write_bytes(content.encode("latin-1"))
    app = StatusApp(status, None, cors_origin="*", stale_after=86400.0, horizon_days=14.0)
    r = get(app, "/status")
    assert r.status == 503 and hdr(r, "Retry-After") == "5" and hdr(r, "X-Content-Type-Options") == "nosniff"
    # neither the file's path nor the error: those go to the journal
    assert json.loads(r.body) == {"error": "status file unreadable or invalid", "status": 503}
    assert str(tmp_path).encode() not in r.body
    builds = app.documents.builds
    assert get(app, "/").status == 503 and get(app, "/status/2").status == 503
    assert app.documents.builds == builds
    assert b"Traceback" not in r.body
    logged = journal.messages(logging.WARNING)[0]
    assert logged.startswith("- GET /status: 503 status file unreadable or invalid (") and str(status) in logged


def test_bad_history_is_ignored_once(files, journal):
    files[1].write_text("not json")
    app = StatusApp(files[0], files[1], cors_origin="*", stale_after=86400.0, horizon_days=14.0)
    assert get(app, "/status").status == 200
    assert get(app, "/metrics").status == 200
    assert sum("ignoring history" in m for m in journal.messages(logging.WARNING)) == 1


# ---------------------------------------------------------------- logs

def test_client_text_is_escaped_in_logs(app, journal):
    app.respond("GET", "/x\nFAKE: 200 ok\r\x1b[31m\u2028\\", {}, client="10.0.0.1")
    app.respond("P\nOST", "/status", {}, client="10.0.0.1")
    get(app, "/status/" + "é\n" * 2000)
    assert len(journal.messages(logging.WARNING)) == 3
    for message in journal.messages(logging.WARNING):
        assert message.isprintable(), message
        assert len(message) < 400
    first = journal.messages(logging.WARNING)[0]
    assert first == "10.0.0.1 GET /x\\x0aFAKE: 200 ok\\x0d\\x1b[31m\\u2028\\\\: 404 not found"


def test_serving_imports_nothing_of_the_backup_pass(files):
    code = ("import sys, json\n"
            "from ethoscope_rsync.web.adapter import StatusServer, make_wsgi_app\n"
            "from ethoscope_rsync.web.app import StatusApp\n"
            "app = StatusApp(%r, %r, cors_origin='*', stale_after=86400.0, horizon_days=14.0)\n"
            "assert app.respond('GET', '/status', {}).status == 200\n"
            "assert app.respond('GET', '/metrics', {}).status == 200\n"
            "make_wsgi_app(app)\n"
            "print(json.dumps(sorted(sys.modules)))\n"
            "assert app.respond('GET', '/status/2', {}).status == 200\n"     # (sqlite3: its newest files)
            "assert not {m for m in sys.modules if m.startswith('ethoscope_rsync.backup')}\n"
            % (str(files[0]), str(files[1])))
    done = subprocess.run(["/usr/bin/python3", "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    loaded = set(json.loads(done.stdout))
    backup_pass = {m for m in loaded if m.startswith(("ethoscope_rsync.backup", "ethoscope_rsync.commands",
                                                      "ethoscope_rsync.alerts"))}
    backup_pass |= loaded & {"ethoscope_rsync.config.load", "ethoscope_rsync.state.store",
                             "ethoscope_rsync.state.events", "ethoscope_rsync.system.execute",
                             "ethoscope_rsync.system.privileges"}
    # (ssl comes with cheroot, which imports it whether or not it serves HTTPS)
    heavy = {"configobj", "validate", "sqlite3", "zeroconf", "pkg_resources", "cherrypy", "cgi"}
    assert "ethoscope_rsync.web.app" in loaded and not backup_pass | (loaded & heavy), \
        sorted(backup_pass | (loaded & heavy))


def test_what_a_device_sent_that_is_not_utf8_or_printable_is_shown_escaped(tmp_path):
    """A device's stderr and file names are decoded with surrogateescape: its bytes that are not
    UTF-8 and its terminal escapes reach every document escaped, and the page still renders."""
    from ethoscope_rsync.state import events as ev
    from ethoscope_rsync.state.history import History
    from ethoscope_rsync.state.store import StatusStore, save_history
    mid = "a" * 32
    odd = f"{mid}/ETHOSCOPE_004/ts/\udcff\x1b[2J.h264"
    store = StatusStore(tmp_path / "status.json", History(), pid=1, what="unified", interval=0, clock=lambda: NOW)
    store.add_device(mid, "ETHOSCOPE_004", "169.254.1.4")
    store.apply(ev.Started(mid, 1, NOW))
    store.apply(ev.FileReceived(mid, "videos", odd, 10, 10, NOW, NOW + 1))
    store.apply(ev.Listed(mid, "videos", ((odd, 10),)))
    store.apply(ev.Finished(mid, False, "ssh: \udcff\udcfe\x1b]0;owned\x07 refused\nsecond line", NOW + 2))
    assert store.status.devices[mid].error == "ssh: \\udcff\\udcfe\\x1b]0;owned\\x07 refused\\x0asecond line"
    store.finish("failed", "1 failed", completed=False)
    store.write()
    save_history(tmp_path / "history.json", store.history)
    app = StatusApp(tmp_path / "status.json", tmp_path / "history.json", clock=lambda: NOW + 3, cors_origin="*",
                    stale_after=86400.0, horizon_days=14.0)
    for path, query in (("/", "format=html"), ("/metrics", ""), ("/status", ""), ("/", "")):
        answer = get(app, path, query)
        assert answer.status == 200, (path, answer.status)
        assert b"\x1b" not in answer.body and b"\xff" not in answer.body
    page = get(app, "/", "format=html").body.decode()
    assert "\\udcff\\udcfe" in page and "refused" in page


def test_a_pass_killed_before_its_end_is_not_shown_running(tmp_path):
    """status.json says "running", but the pass's process is gone (SIGKILL, out of memory): every
    reader shows it interrupted and its started devices failed, as the next pass will record them."""
    status, history = build(example_pass(running=True), finish=False)
    assert status["run"]["pid"] == os.getpid() and status["run"]["outcome"] == "running"
    files = tmp_path / "status.json", tmp_path / "history.json"
    write_json(files[1], history)
    write_json(files[0], status)
    alive = StatusApp(*files, clock=Clock(), cors_origin="*", stale_after=86400.0, horizon_days=14.0)
    assert json.loads(get(alive, "/").body)["status"] == "running"
    gone = subprocess.Popen(["true"])
    gone.wait()                                   # a pid that was a process and is no more
    status["run"]["pid"] = gone.pid
    write_json(files[0], status)
    app = StatusApp(*files, clock=Clock(), cors_origin="*", stale_after=86400.0, horizon_days=14.0)
    assert json.loads(get(app, "/").body)["status"] == "idle"
    doc = json.loads(get(app, "/status").body)
    assert doc["run"]["outcome"] == "interrupted" and doc["processing_devices"] == []
    running = [d for d in doc["devices"].values() if d["status"] == "running"]
    assert running == [] and any("the previous pass ended before this device" in d["last_error"]
                                 for d in doc["devices"].values())
    assert "\nethoscope_backup_run_active 0\n" in get(app, "/metrics").body.decode()


def test_every_document_of_one_status_agrees_once_its_pass_is_gone(tmp_path):
    """Documents built while the pass ran are not served beside ones that know it is gone: the
    moment one document finds the pass's process gone, the others are built again."""
    status, history = build(example_pass(running=True), finish=False)
    files = tmp_path / "status.json", tmp_path / "history.json"
    write_json(files[1], history)
    pass_ = subprocess.Popen(["sleep", "60"])
    try:
        status["run"]["pid"] = pass_.pid
        write_json(files[0], status)
        # one instant: nothing expires by time
        app = StatusApp(*files, clock=Clock(), cors_origin="*", stale_after=86400.0, horizon_days=14.0)
        assert json.loads(get(app, "/").body)["status"] == "running"
    finally:
        pass_.kill()
        pass_.wait()
    assert json.loads(get(app, "/status").body)["run"]["outcome"] == "interrupted"
    assert json.loads(get(app, "/").body)["status"] == "idle"
    builds = app.documents.builds
    get(app, "/status")
    get(app, "/")
    assert app.documents.builds == builds                # and then cached as before


def test_the_second_copy_is_served_from_its_own_file_and_follows_it(files, clock, tmp_path):
    from ethoscope_rsync.state.offsite import OffsiteState, Snapshot
    from ethoscope_rsync.state.store import save_offsite
    second = tmp_path / "offsite.json"
    app = StatusApp(files[0], files[1], clock=clock, cors_origin="*", stale_after=DAY, horizon_days=14.0,
                    offsite_file=second)
    assert "offsite" not in json.loads(get(app, "/status").body)
    save_offsite(second, OffsiteState(repository="/r", outcome="ok", last=Snapshot("1234abcd", NOW - 60, 1, 2, 3, 4.0)))
    assert json.loads(get(app, "/status").body)["offsite"]["snapshot"]["id"] == "1234abcd"
    assert b"ethoscope_backup_offsite_lag_seconds 60\n" in get(app, "/metrics").body
    save_offsite(second, OffsiteState(repository="/r", outcome="running", pid=2 ** 22 + 12345))   # a killed run
    assert json.loads(get(app, "/status").body)["offsite"]["result"] == "interrupted"
    second.write_text("{not json")                       # a broken file hides the second copy, never the status
    response = get(app, "/status")
    assert response.status == 200 and "offsite" not in json.loads(response.body)


def test_a_device_s_own_answer_lists_its_newest_files_from_the_inventory(tmp_path):
    """The history names a tree's NEWEST_KEPT newest files; /status/<device> reads FILES_LISTED of
    them from the inventory database beside it (and the history's own when it cannot)."""
    from ethoscope_rsync.state import events as ev
    from ethoscope_rsync.state.history import NEWEST_KEPT, History
    from ethoscope_rsync.state.inventory import Inventories
    from ethoscope_rsync.state.model import FILES_LISTED
    from ethoscope_rsync.state.store import StatusStore, save_history
    key = "c" * 32
    db = Inventories(tmp_path / "inventory.sqlite")
    store = StatusStore(tmp_path / "status.json", History(), pid=1, what="unified", interval=1.0,
                        clock=lambda: NOW, inventories=db)
    store.add_device(key, "ETHOSCOPE_003", "169.254.1.3")
    chunks = {f"{key}/ETHOSCOPE_003/2026-01-01_10-00-00/{n:05d}.h264": n for n in range(FILES_LISTED + 300)}
    store.apply(ev.Listed(key, "videos", tuple(chunks.items())))
    store.apply(ev.Finished(key, True, "Backup completed successfully", NOW))
    store.write()
    save_history(tmp_path / "history.json", store.history)
    db.close()

    def named():
        app = StatusApp(tmp_path / "status.json", tmp_path / "history.json", cors_origin="*", stale_after=86400.0,
                        horizon_days=14.0)
        files = json.loads(get(app, "/status/003").body)["device"]["synced"]["videos"]["detailed_files"]
        return sorted(files)
    assert named() == sorted(p.rsplit("/", 1)[1] for p in sorted(chunks)[-FILES_LISTED:])
    (tmp_path / "inventory.sqlite").write_bytes(b"not a database")
    assert named() == sorted(p.rsplit("/", 1)[1] for p in sorted(chunks)[-NEWEST_KEPT:])
