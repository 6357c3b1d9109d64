"""The status page with its strips and usage charts, in headless Chromium: drawn on a desktop window and
readable on a phone (no sideways scrolling); and /metrics with the disk figures passes promtool."""
import re
import subprocess

import pytest

from tests.fixtures.status import NOW, long_history
from ethoscope_rsync.render import upstream as render
from ethoscope_rsync.state.history import Verification

CHROMIUM = ["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
            "--hide-scrollbars"]
# Test harness only (the page has no script): report the page's width against the window's.
MEASURE = ("<script>document.title = 'width ' + document.documentElement.scrollWidth + ' of ' + "
           "window.innerWidth;</script>")


@pytest.fixture(scope="module")
def page(tmp_path_factory):
    status, history = long_history(20, passes=30)
    first = sorted(history["devices"])[0]
    history["verification"] = {first: Verification(at=NOW - 3600, files=40, bytes=10 ** 9,
                                                   damaged=[["videos/x.h264", "checksum mismatch"]],
                                                   damaged_count=1).to_json()}
    html = render.render_html(status, history, NOW, 86400.0, horizon_days=14.0)
    folder = tmp_path_factory.mktemp("page")
    (folder / "page.html").write_text(html)
    (folder / "measured.html").write_text(html.replace("</body>", MEASURE + "</body>"))
    return folder, status, history


def chromium(folder, window, *args, page="page.html"):
    profile = folder / ("profile-%s" % window.replace(",", "x"))
    p = subprocess.run(CHROMIUM + ["--window-size=" + window, "--user-data-dir=%s" % profile, *args,
                                   "file://%s" % (folder / page)], capture_output=True, timeout=120)
    return p.stdout.decode(errors="replace")


def test_desktop_page_draws_strips_and_charts(page):
    folder, status, history = page
    shot = folder / "desktop.png"
    chromium(folder, "1280,900", "--screenshot=%s" % shot)
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 20000
    dom = chromium(folder, "1280,900", "--dump-dom")
    assert len(re.findall(r'<svg class="strip"', dom)) == 20
    assert len(re.findall(r'<svg class="chart"', dom)) == 2 and "full in about" in dom
    assert "1 damaged file(s) found by verify" in dom


@pytest.mark.parametrize("window", ["390,844", "320,640"])
def test_phone_page_needs_no_sideways_scrolling(page, window):
    folder, _, _ = page
    chromium(folder, window, "--screenshot=%s" % (folder / ("phone-%s.png" % window.split(",")[0])))
    dom = chromium(folder, window, "--dump-dom", page="measured.html")
    measured = re.search(r"<title>width (\d+) of (\d+)</title>", dom)
    assert measured, dom[:500]
    assert int(measured.group(1)) <= int(measured.group(2)), measured.group(0)


def test_metrics_with_the_disk_pass_promtool(page):
    _, status, history = page
    text = render.render_metrics(status, history, NOW, 86400.0, horizon_days=14.0)
    p = subprocess.run(["promtool", "check", "metrics"], input=text.encode(), capture_output=True, timeout=60)
    assert p.returncode == 0, (p.stdout, p.stderr)
    assert "ethoscope_backup_destination_full_in_seconds" in text
    assert "ethoscope_backup_device_damaged_files" in text
