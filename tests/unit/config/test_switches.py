"""The node's switches: which are on, and what a pass copies then."""
import pytest

from ethoscope_rsync.config.switches import SWITCHES, switched_on, switched_what


def test_the_switches_on_are_the_folders_systemd_keeps(tmp_path):
    assert switched_on(tmp_path / "missing") == ()
    assert switched_on(tmp_path) == ()
    for name in ("ethoscope_backup_video", "ethoscope_backup_sqlite", "something_else"):
        (tmp_path / name).mkdir()
    assert switched_on(tmp_path) == ("ethoscope_backup_sqlite", "ethoscope_backup_video")


@pytest.mark.parametrize("what, names, expected", [
    ("unified", (), "unified"),                                   # no switch on: as configured
    ("results", (), "results"),
    ("unified", ("ethoscope_backup_unified",), "unified"),
    ("unified", ("ethoscope_backup_sqlite",), "results"),
    ("unified", ("ethoscope_backup_video",), "videos"),
    ("unified", ("ethoscope_backup_sqlite", "ethoscope_backup_video"), "unified"),
    ("results", ("ethoscope_backup_unified",), "results"),        # the configuration still bounds it
    ("results", ("ethoscope_backup_video",), ""),                 # nothing left to copy
    ("videos", ("ethoscope_backup_sqlite", "ethoscope_backup_unified"), "videos"),
])
def test_what_a_pass_copies(what, names, expected):
    assert switched_what(what, names) == expected


def test_the_three_upstream_names():
    assert set(SWITCHES) == {"ethoscope_backup_unified", "ethoscope_backup_sqlite", "ethoscope_backup_video"}
