"""The disk forecast: samples kept in the history, growth a day, days to full (pure functions), and
the sample a pass records (real statvfs on a temporary folder)."""
import json
import logging
import os

import pytest

from ethoscope_rsync.state import forecast
from ethoscope_rsync.config.load import load_config
from ethoscope_rsync.backup.destinations import measure, record_usage, tree_bytes
from ethoscope_rsync.state.history import DeviceHistory, DiskSample, History, Inventory, Usage

DAY, HOUR = 86400.0, 3600.0
GB = 10 ** 9


def sample(at, used, free=100 * GB, fs=1, kinds=("videos",), growth=None):
    return DiskSample(at, {k: Usage(free, 500 * GB, used, 0, fs, growth) for k in kinds})


def test_samples_are_thinned_to_one_every_spacing_plus_the_newest():
    samples = []
    for minute in range(0, 6 * 60 + 1, 5):              # a pass every 5 minutes for 6 hours
        samples = forecast.add_sample(samples, sample(1000.0 + minute * 60, minute))
    assert [s.at - 1000.0 for s in samples] == [0, 2 * HOUR, 4 * HOUR, 6 * HOUR]


def test_samples_older_than_a_week_go_and_a_clock_step_back_drops_the_future():
    samples = [sample(t * forecast.SPACING, 0) for t in range(1, 200)]
    kept = forecast.add_sample(samples, sample(200 * forecast.SPACING, 0))
    assert kept[-1].at - kept[0].at <= forecast.KEPT and len(kept) == forecast.KEPT / forecast.SPACING + 1
    back = forecast.add_sample(kept, sample(150 * forecast.SPACING + 1, 0))
    assert back[-1].at == 150 * forecast.SPACING + 1 and all(s.at < back[-1].at for s in back[:-1])


def test_rate_is_the_median_so_a_first_full_copy_does_not_dominate():
    steady = [(h * HOUR, h * 1e9) for h in range(0, 48, 2)]                   # 1 GB an hour = 24 GB a day
    assert forecast.rate_per_day(steady) == pytest.approx(24e9)
    jump = [(t, v + (5e12 if t >= 2 * HOUR else 0)) for t, v in steady]       # a new device's 5 TB
    assert forecast.rate_per_day(jump) == pytest.approx(24e9)


def test_no_rate_from_too_little_history():
    assert forecast.rate_per_day([]) is None
    assert forecast.rate_per_day([(0, 0)]) is None
    assert forecast.rate_per_day([(0, 0), (forecast.MIN_SPAN - 1, 10)]) is None
    assert forecast.rate_per_day([(0, 0), (forecast.MIN_SPAN, 10)]) == pytest.approx(10 / forecast.MIN_SPAN * DAY)


def test_days_to_full():
    assert forecast.days_to_full(100 * GB, 10 * GB) == 10
    assert forecast.days_to_full(100 * GB, 0) is None
    assert forecast.days_to_full(100 * GB, -5.0) is None
    assert forecast.days_to_full(100 * GB, None) is None
    assert forecast.days_to_full(-1, 10 * GB) == 0


def test_growth_is_the_faster_of_our_copies_and_the_shrinking_free_space():
    ours_only = [sample(h * HOUR, h * GB, free=100 * GB) for h in range(0, 13)]
    assert forecast.growth(ours_only, ("videos",)) == pytest.approx(24 * GB)
    others_write_too = [sample(h * HOUR, h * GB, free=100 * GB - 3 * h * GB) for h in range(0, 13)]
    assert forecast.growth(others_write_too, ("videos",)) == pytest.approx(72 * GB)


def test_destinations_on_one_file_system_share_its_growth_and_free_space():
    samples = [DiskSample(h * HOUR, {"results": Usage(100 * GB, 500 * GB, h * GB, 0, 7),
                                     "videos": Usage(100 * GB, 500 * GB, 2 * h * GB, 0, 7)}) for h in range(13)]
    latest = forecast.with_growth(samples[:-1], samples[-1])
    assert latest.usage["results"].growth == latest.usage["videos"].growth == pytest.approx(72 * GB)
    found = forecast.forecasts(samples[:-1] + [latest])
    assert found["results"].shared == ("videos",) and found["videos"].shared == ("results",)
    assert found["videos"].days == pytest.approx(100 / 72)
    assert forecast.file_systems(latest.usage) == {7: ("results", "videos")}


def test_a_destination_moved_to_another_file_system_starts_afresh():
    old = [sample(h * HOUR, h * GB, fs=1) for h in range(12)]
    moved = forecast.with_growth(old, sample(12 * HOUR, 500 * GB, fs=2))
    assert moved.usage["videos"].growth is None


def test_forecast_flags_the_horizon():
    samples = [sample(h * HOUR, h * GB, free=100 * GB) for h in range(13)]
    samples[-1] = forecast.with_growth(samples[:-1], samples[-1])
    f = forecast.forecasts(samples)["videos"]
    assert f.days == pytest.approx(100 / 24) and f.short(14.0) and not f.short(4.0) and not f.short(0)


def test_usage_series_thins_and_keeps_the_newest():
    samples = [sample(t, t) for t in range(1, 87)]
    series = forecast.usage_series(samples, ("videos",), points=40)
    assert series[0] == (1, 1) and series[-1] == (86, 86) and len(series) <= 41
    assert forecast.usage_series(samples, ("results",)) == []


# ---------------------------------------------------------------- the records in the history

def test_disk_samples_round_trip_and_tolerate_junk():
    samples = [sample(1000.0, 5, growth=1.5), sample(2000.0, 6)]
    history = History(disk=samples)
    again = History.from_json(json.loads(json.dumps(history.to_json())))
    assert again.disk == samples
    junk = {"disk": [None, "x", [0, {}], [5.0, {"videos": [1, 2, 3]}], [6.0, {"bogus": [1, 2, 3, 4, 5, None]}],
                     [7.0, {"videos": [1.5, "2", True, 4, 5, "fast"]}]]}
    assert History.from_json(junk).disk == [DiskSample(5.0, {}), DiskSample(6.0, {}),
                                            DiskSample(7.0, {"videos": Usage(1, 0, 0, 4, 5, 0)})]


def test_an_older_history_without_the_new_fields_reads():
    assert History.from_json({"last_backup": 5, "devices": {}}).disk == []
    assert History.from_json({"verification": {"k": "not a record"}}).verification == {}


# ---------------------------------------------------------------- what a pass records

@pytest.fixture
def config(tmp_path):
    conf = tmp_path / "backup.conf"
    conf.write_text("[paths]\nresults = %s\nvideos = %s\nstate_dir = %s\n" % (
        tmp_path / "results", tmp_path / "videos", tmp_path / "state"))
    return load_config(conf)


def test_measure_counts_inventories_and_the_raw_mirror(config, tmp_path):
    raw = tmp_path / "results" / ".ethoscope-backup" / "raw" / "a"
    raw.mkdir(parents=True)
    (raw / "x.db").write_bytes(b"1" * 1000)
    (raw / "x.db-wal").write_bytes(b"2" * 500)
    os.symlink("/etc/passwd", raw / "link.db")                       # never followed
    history = History(devices={"a": DeviceHistory(inventory={"results": Inventory({"x.db": 4000}),
                                                             "videos": Inventory({"c.h264": 7000}, 1, 3000)})})
    found = measure(config, history, 1234.0)
    assert found.at == 1234.0
    assert (found.usage["results"].used, found.usage["results"].raw) == (4000 + 1500, 1500)
    assert (found.usage["videos"].used, found.usage["videos"].raw) == (10000, 0)
    stats = os.statvfs(tmp_path)
    assert found.usage["results"].total == stats.f_blocks * stats.f_frsize
    assert found.usage["results"].fs == found.usage["videos"].fs == os.stat(tmp_path).st_dev
    assert tree_bytes(tmp_path / "missing") == 0


def test_record_usage_adds_one_sample_a_pass_and_warns_before_full(config, journal):
    history = History(devices={"a": DeviceHistory(inventory={"videos": Inventory({"c": 1})})})
    now = measure(config, history, 0).usage["videos"]
    # free space shrank by a tenth of today's every hour: full in well under a day
    history.disk = [sample(h * HOUR, 0, free=now.free + (12 - h) * now.free // 10, fs=now.fs,
                           kinds=("results", "videos")) for h in range(0, 12, 2)]
    record_usage(config.changed(alert={"disk_horizon": 14.0}), history, 12 * HOUR)
    assert len(history.disk) == 7 and history.disk[-1].at == 12 * HOUR
    assert history.disk[-1].usage["videos"].growth > now.free      # (others write to this file system too)
    warnings = journal.messages(logging.WARNING)
    assert any("videos destination" in w and "full in less than a day" in w for w in warnings), warnings
    journal.records.clear()
    record_usage(config.changed(alert={"disk_horizon": 0.0}), history, 13 * HOUR)
    assert not journal.messages(logging.WARNING) and len(history.disk) == 8


def test_record_usage_keeps_nothing_before_anything_was_copied(config):
    history = History(devices={"a": DeviceHistory()})
    record_usage(config, history, 5.0)
    assert history.disk == []
