"""The verdict in headless Chromium, on a 40-device lab where one device fails and one has been silent for
three days: at desktop and phone widths the first screen shows the verdict naming both and their rows
first, the tab title carries the count, nothing scrolls sideways, and the stale row is not green."""
import json
import re

import pytest

from tests.fixtures.status import NOW, add_history_device, build, scripted_pass
from tests.integration.test_page import chromium
from ethoscope_rsync.render import upstream as render

# Test harness only (the page has no script): where the verdict and the first two rows are, against the window.
MEASURE = ("<script>const r = s => document.querySelector(s).getBoundingClientRect();"
           "const rows = document.querySelectorAll('tr.device');"
           "document.title = ['verdict', r('#verdict').top, r('#problems').bottom, 'rows', rows[0].dataset.id,"
           " rows[1].dataset.id, Math.round(rows[1].getBoundingClientRect().bottom), 'window', window.innerWidth,"
           " window.innerHeight, 'width', document.documentElement.scrollWidth,"
           " 'stalecolor', getComputedStyle(rows[1].querySelector('td.stl')).color].join(' ');</script>")


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    status, history = build(scripted_pass(40, failing=0, now=NOW - 600))
    failing = sorted(status["devices"])[8]
    status["devices"][failing].update(state="error", error="connection lost")
    history["devices"][failing].update(last_outcome="error", last_error="connection lost",
                                       last_error_time=NOW - 700)
    add_history_device(history, machine_id="e" * 32, name="ETHOSCOPE_041", last_success=NOW - 3 * 86400)
    html = render.render_html(status, history, NOW, 86400.0, horizon_days=14.0, overdue_after=1800.0)
    folder = tmp_path_factory.mktemp("verdict")
    (folder / "page.html").write_text(html)
    (folder / "measured.html").write_text(html.replace("</body>", MEASURE + "</body>"))
    return folder, failing


@pytest.mark.parametrize("window", ["1280,800", "390,844", "320,640"])
def test_first_screen_answers_is_everything_safe(lab, window):
    folder, failing = lab
    dom = chromium(folder, window, "--dump-dom")
    assert re.search(r"<title>\(2\) ethoscope backup: 2 problems</title>", dom)
    verdict = re.search(r'<h1 id="verdict"[^>]*>([^<]*)</h1><ul id="problems">(.*?)</ul>', dom)
    assert verdict and verdict.group(1) == "39/41 safe", dom[:800]
    assert "ETHOSCOPE_0" in verdict.group(2) and "failing since" in verdict.group(2) \
        and "connection lost" in verdict.group(2)
    assert "ETHOSCOPE_041 not seen for 3.0 d" in verdict.group(2)
    measured = chromium(folder, window, "--dump-dom", page="measured.html")
    found = re.search(r"<title>verdict (\S+) (\S+) rows (\w+) (\w+) (\d+) window (\d+) (\d+) width (\d+) "
                      r"stalecolor (rgb\([^)]*\))</title>", measured)
    assert found, measured[:800]
    top, bottom, first, second, rows_bottom, width, height, scroll, color = found.groups()
    assert float(top) < float(bottom) <= int(height)                # the verdict is on the first screen
    assert (first, second) == (failing, "e" * 32)                  # problem rows first: failing, then stale
    assert int(scroll) <= int(width)                                # no sideways scrolling
    assert color != "rgb(26, 127, 55)"                              # the stale state is not green
    if window == "1280,800":
        assert int(rows_bottom) <= int(height)                      # on a desktop, their rows too
    chromium(folder, window, "--screenshot=%s" % (folder / ("verdict-%s.png" % window.split(",")[0])))
    assert (folder / ("verdict-%s.png" % window.split(",")[0])).stat().st_size > 10000


def test_metrics_with_the_verdict_pass_promtool(tmp_path):
    import subprocess
    from tests.fixtures.status import NOW, build, example_pass
    from ethoscope_rsync.web.app import StatusApp
    from ethoscope_rsync.state import pauses
    status, history = build(example_pass())
    (tmp_path / "status.json").write_text(json.dumps(status))
    (tmp_path / "history.json").write_text(json.dumps(history))
    (tmp_path / "paused.json").write_text(json.dumps(pauses.to_json(
        {"ETHOSCOPE_001": pauses.Paused("ETHOSCOPE_001", "", pauses.Pause('off "for now"', NOW))})))
    app = StatusApp(tmp_path / "status.json", tmp_path / "history.json", clock=lambda: NOW + 7200, cors_origin="*",
                    stale_after=86400.0, horizon_days=14.0, overdue_after=1800.0, pauses_file=tmp_path / "paused.json")
    text = app.respond("GET", "/metrics", {}).body.decode()
    assert "ethoscope_backup_overdue 1" in text and 'device_name="ETHOSCOPE_001"} 1' in text
    assert "ethoscope_backup_problems 2" in text                       # 002 failing, passes overdue
    p = subprocess.run(["promtool", "check", "metrics"], input=text.encode(), capture_output=True, timeout=60)
    assert p.returncode == 0, (p.stdout, p.stderr)
