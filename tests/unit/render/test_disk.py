"""The disk figures and the forecast in /status, /metrics and the page; the page's SVG strip and chart."""
import copy
import re

import pytest

from tests.fixtures.status import NOW, build, disk_samples, example_pass, long_history
from ethoscope_rsync.render import upstream as render
from ethoscope_rsync.render import svg as render_svg
from ethoscope_rsync.state.history import PassSummary

DAY = 86400.0


@pytest.fixture(scope="module")
def documents():
    return long_history(12, passes=30)


def test_status_has_each_destination_with_its_forecast(documents):
    status, history = documents
    disk = render.status_document(status, history, NOW, DAY, horizon_days=14.0)["disk"]
    videos, results = disk["destinations"]["videos"], disk["destinations"]["results"]
    assert disk["horizon_days"] == 14.0 and disk["samples"] == len(history["disk"])
    # the fixture: videos grow 80 GB a day on a 4 TB disk holding 1.5 TB + a week
    assert videos["growth_bytes_per_day"] == pytest.approx(80e9, rel=0.01)
    assert videos["days_to_full"] == pytest.approx(videos["free_bytes"] / 80e9, rel=0.01)
    assert videos["full_in"] == "about %d days" % round(videos["days_to_full"])
    assert videos["warning"] is False and videos["shares_file_system_with"] == []
    assert results["raw_mirror_bytes"] == results["used_bytes"] // 2
    assert results["path"] == "/ethoscope_data/results" and results["growth_human"].endswith("/day")


def test_the_horizon_flags_a_destination(documents):
    status, history = documents
    document = render.status_document(status, history, NOW, DAY, horizon_days=14.0)
    days = document["disk"]["destinations"]["videos"]["days_to_full"]
    flagged = render.status_document(status, history, NOW, DAY, horizon_days=days + 1)["disk"]["destinations"]
    assert flagged["videos"]["warning"] is True and flagged["results"]["warning"] is False


def test_no_samples_no_destinations():
    status, history = build(example_pass())
    assert render.status_document(status, history, NOW, DAY, horizon_days=14.0)["disk"] == {
        "destinations": {}, "horizon_days": 14.0, "samples": 0}
    assert "Destinations" not in render.render_html(status, history, NOW, DAY, horizon_days=14.0)


def test_metrics_carry_the_disk(documents):
    text = render.render_metrics(*documents, NOW, DAY, horizon_days=14.0)
    free = re.search(r'^ethoscope_backup_destination_free_bytes'
                     r'\{destination="videos",path="/ethoscope_data/videos"\} (\d+)$', text, re.M)
    assert free and int(free.group(1)) > 0
    growth = re.search(r'^ethoscope_backup_destination_growth_bytes_per_second\{destination="videos",[^}]*\} ([\d.]+)$',
                       text, re.M)
    assert growth and float(growth.group(1)) == pytest.approx(80e9 / DAY, rel=0.01)
    assert re.search(r'^ethoscope_backup_destination_full_in_seconds\{destination="videos",[^}]*\} \d+$', text, re.M)
    assert re.search(r'^ethoscope_backup_destination_full_soon\{destination="videos",[^}]*\} 0$', text, re.M)


def test_shared_file_system_is_one_block_on_the_page():
    status, history = long_history(3, passes=2)
    history = dict(history, disk=[s.to_json() for s in disk_samples(NOW - 3600, shared=True)])
    page = render.render_html(status, history, NOW, DAY, horizon_days=14.0)
    assert page.count('<div class="dest"') == 1 and 'data-kinds="results videos"' in page
    destinations = render.status_document(status, history, NOW, DAY, horizon_days=14.0)["disk"]["destinations"]
    assert destinations["results"]["shares_file_system_with"] == ["videos"]
    assert destinations["results"]["days_to_full"] == destinations["videos"]["days_to_full"]


def test_page_has_strips_charts_no_script_no_external_asset(documents):
    status, history = documents
    page = render.render_html(status, history, NOW, DAY, horizon_days=14.0)
    assert page.count('<svg class="strip"') == 12 and page.count('<svg class="chart"') == 2
    assert "<script" not in page.lower() and not re.search(r'(src|href)="(https?:)?//', page)
    assert '<meta name="viewport" content="width=device-width, initial-scale=1">' in page
    assert "full in about" in page
    plain = render.render_html(status, history, NOW, DAY, charts=False, horizon_days=14.0)
    assert "<svg" not in plain and "Destinations" in plain


def test_page_inputs_not_modified(documents):
    status, history = copy.deepcopy(documents)
    render.render_html(status, history, NOW, DAY, horizon_days=14.0)
    assert (status, history) == documents


# ---------------------------------------------------------------- the SVG parts

def test_levels_follow_the_log_of_bytes():
    assert [render_svg.level(b) for b in (0, 1, 1024, 2048, 1 << 20, 1 << 30, 1 << 37, 1 << 60, 1 << 200)] == \
        [0, 0, 0, 0, 4, 9, 12, 12, 12]


def test_strip_draws_each_outcome_in_its_slot():
    passes = [PassSummary(1.0, "completed", 1 << 30), PassSummary(2.0, "error", 0), PassSummary(3.0, "nothing", 0)]
    svg = render_svg.strip(passes)
    assert svg == ('<svg class="strip" viewBox="0 0 120 16" width="120" height="16" role="img"><title>'
                   "last 3 passes: 1 copied, 1 with nothing new, 1 failed</title>"
                   '<path class="p-ok" d="M108 3h3v13h-3z"/><path class="p-none" d="M116 14h3v2h-3z"/>'
                   '<path class="p-err" d="M112 0h3v16h-3z"/></svg>')


def test_strip_keeps_the_last_thirty():
    passes = [PassSummary(float(i), "completed" if i else "error", 5000) for i in range(40)]
    svg = render_svg.strip(passes)
    assert 'class="p-err" d=""' in svg and svg.count("M") == 30 and "M0 " in svg and "M116 " in svg


def test_chart_forecast_stops_at_full_and_labels_are_escaped():
    series = [(0.0, 0), (DAY, 10e9)]
    svg = render_svg.usage_chart(series, capacity=30 * 10 ** 9, per_day=10e9, horizon_days=14, label='<b>"x"</b>')
    assert "<b>" not in svg and "&lt;b&gt;&quot;x&quot;" in svg
    line = re.search(r'<line class="c-fc" x1="([\d.]+)" y1="([\d.]+)" x2="([\d.]+)" y2="([\d.]+)"/>', svg)
    cap = re.search(r'<line class="c-cap" x1="\d+" x2="\d+" y1="([\d.]+)"', svg)
    assert line and cap and float(line.group(4)) == pytest.approx(float(cap.group(1)), abs=0.05)
    assert float(line.group(3)) < render_svg.W - 8                       # full after 2 days, well before 14
    assert '<polyline class="c-used" points="' in svg
    no_growth = render_svg.usage_chart(series, 30 * 10 ** 9, None, 14, "x")
    assert 'class="c-fc"' not in no_growth
    assert render_svg.usage_chart([], 1, None, 14, "x") == ""
