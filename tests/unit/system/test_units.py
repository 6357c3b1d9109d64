"""The text the generator writes: the pass's sandbox opened to the destinations, the switch names."""
from pathlib import Path

from ethoscope_rsync.system.units import covered, parse_paths, refusal, sandbox_dropins, switch_fragment


def test_the_shipped_destinations_need_no_drop_in():
    assert sandbox_dropins((Path("/ethoscope_data/results"), Path("/ethoscope_data/videos")), "f") == {}
    assert sandbox_dropins((Path("/ethoscope_data/results/sub"), Path("/ethoscope_data/videos")), "f") == {}


def test_other_destinations_are_opened_and_their_mounts_waited_for():
    dropins = sandbox_dropins((Path("/srv/lab%1/results"), Path("/ethoscope_data/videos")), "/etc/x.conf")
    assert dropins["ethoscope-backup.service"] == (
        "# Written by ethoscope-backup-generator from /etc/x.conf (and the node's ethoscope.conf).\n"
        "[Unit]\nRequiresMountsFor=/srv/lab%%1/results\n[Service]\nReadWritePaths=-/srv/lab%%1/results\n")
    assert dropins["ethoscope-backup-verify.service"].endswith("[Unit]\nRequiresMountsFor=/srv/lab%%1/results\n")


def test_paths_the_sandbox_cannot_take_are_refused_and_left_out():
    for bad in ("/srv/with space", "/srv/quote\"d", "/srv/back\\slash", "/srv/../etc", "relative"):
        assert refusal(Path(bad)), bad
        assert sandbox_dropins((Path(bad),), "f") == {}
    assert "ProtectHome=yes" in refusal(Path("/home/lab/results"))
    assert refusal(Path("/mnt/disk-1/ethoscope_data.2/results")) == ""


def test_covered_and_parsed():
    allowed = parse_paths("-/ethoscope_data/results -/ethoscope_data/videos /srv/a")
    assert allowed == (Path("/ethoscope_data/results"), Path("/ethoscope_data/videos"), Path("/srv/a"))
    assert covered(Path("/srv/a/b"), allowed) and covered(Path("/srv/a"), allowed)
    assert not covered(Path("/srv/ab"), allowed) and not covered(Path("/srv"), allowed)
    assert parse_paths("") == ()


def test_a_switch_fragment_names_its_trees():
    assert "backups of results and videos" in switch_fragment("ethoscope_backup_unified")
    assert "backups of videos switched on" in switch_fragment("ethoscope_backup_video")
