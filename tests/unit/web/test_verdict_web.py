"""The verdict through the status service: GET / keeps the upstream keys and adds the verdict, the page
opens with it, and an unchanged page costs a 304 to a wall display reloading it; overdue turns up by
itself (the files unchanged)."""
import json

from tests.fixtures.status import B, NOW, build, example_pass, scripted_pass, write_json
from ethoscope_rsync.web.app import StatusApp
from tests.unit.web.examples import write_example

DAY = 86400.0


class Clock:
    def __init__(self, now=NOW):
        self.now = now

    def __call__(self):
        return self.now


def get(app, path, query="", **headers):
    return app.respond("GET", path, {k.replace("_", "-"): v for k, v in headers.items()}, query)


def hdr(response, name):
    return next((v for k, v in response.headers if k.lower() == name.lower()), None)


def make(tmp_path, clock, overdue_after=0.0, write=write_example):
    status, history = tmp_path / "status.json", tmp_path / "history.json"
    write(status, history)
    return StatusApp(status, history, clock=clock, cors_origin="*", stale_after=DAY, horizon_days=14.0,
                     overdue_after=overdue_after)


def test_root_keeps_the_upstream_keys_and_adds_the_verdict(tmp_path):
    root = json.loads(get(make(tmp_path, Clock()), "/").body)
    assert root["status"] == "idle" and root["last_backup"] and root["last_pass"] == "failed"
    verdict = root["verdict"]
    assert verdict["level"] == "problem" and verdict["safe"] == 2 and verdict["devices"] == 3
    assert [p["id"] for p in verdict["problems"]] == [B] and verdict["problems"][0]["problem"] == "failing"
    assert verdict["line"].startswith("2/3 safe \u2014 ETHOSCOPE_002 failing since ")


def test_page_opens_with_the_verdict_and_a_reload_gets_a_304(tmp_path):
    clock = Clock()
    app = make(tmp_path, clock)
    first = get(app, "/", Accept="text/html")
    page = first.body.decode()
    assert page.index('id="verdict"') < page.index('id="summary"') < page.index('id="devices"')
    assert "<title>(1) ethoscope backup: 1 problem</title>" in page and 'content="30"' in page
    clock.now += 5                        # the display reloads: the page is rebuilt, its bytes the same
    again = get(app, "/", Accept="text/html", If_None_Match=hdr(first, "ETag"))
    assert again.status == 304 and again.body == b""


def test_overdue_turns_up_by_itself(tmp_path):
    def fresh(status_path, history_path):
        status, history = build(scripted_pass(2, failing=0, now=NOW - 600))
        write_json(status_path, status)
        write_json(history_path, history)
    clock = Clock()
    app = make(tmp_path, clock, overdue_after=1800, write=fresh)
    assert json.loads(get(app, "/").body)["verdict"]["level"] == "ok"
    clock.now += 1800                     # no pass since: the cached answer expires with the verdict
    root = json.loads(get(app, "/").body)
    assert root["verdict"]["level"] == "problem" and root["verdict"]["overdue"] is True
    assert "(overdue)" in get(app, "/", "format=html").body.decode()


def test_a_browser_s_favicon_guess_is_a_quiet_404(tmp_path, caplog):
    import logging
    app = make(tmp_path, Clock())
    with caplog.at_level(logging.INFO, logger="ethoscope_rsync.web"):
        assert get(app, "/favicon.ico").status == 404
        assert not [r for r in caplog.records if "favicon" in r.getMessage()]
        assert get(app, "/nonsense").status == 404
    assert [r for r in caplog.records if "/nonsense" in r.getMessage()]
    assert '<link rel="icon" href="data:,">' in get(app, "/", "format=html").body.decode()


def test_root_keys_are_the_upstream_renderer_s(tmp_path):
    from ethoscope_rsync.render import upstream, verdict
    for status, history in (build(example_pass()), build(example_pass(running=True), finish=False), (None, None)):
        ours = verdict.root_document(status, history, NOW, DAY, 1800.0)
        assert {k: ours[k] for k in ("status", "last_backup")} == upstream.root_document(status, history)
