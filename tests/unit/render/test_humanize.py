"""Human-readable sizes, times and ages."""
import time

from ethoscope_rsync.render.humanize import format_age, format_time, human_rate, human_size


def test_human_size_matches_upstream_style():
    assert [human_size(n) for n in (108, 106496, 33554432, 177471596)] == [
        "108 B", "104.0 KB", "32.0 MB", "169.3 MB"]
    assert human_size(float("inf")) == "0 B" and human_size("junk") == "0 B"
    assert human_size(5 << 50) == "5120.0 TB"


def test_format_time_and_age():
    assert format_time(0) == "" and format_time(None) == ""
    assert format_time(1700000000) == time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(1700000000))
    assert [format_age(s) for s in (-5, 42, 300, 3 * 3600, 4 * 86400)] == ["0 s", "42 s", "5 min", "3.0 h", "4.0 d"]


def test_rates_as_the_upstream_tool_shows_them():
    assert human_rate(4.55 * 1024 * 1024) == "4.55MB/s"
    assert human_rate(7.53 * 1024) == "7.53kB/s"
    assert human_rate(100) == "100.00B/s"
    assert human_rate(float("nan")) == "0.00B/s"
