"""Root's folders under a destination handed to the service user (ethoscope_rsync.backup.reclaim), on
real folders: folders only, never through a link, only the devices' folders, bounded."""
import os
import stat
from pathlib import Path

import pytest

from ethoscope_rsync.backup import reclaim as reclaiming
from ethoscope_rsync.backup.reclaim import may_own, reclaim

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="hands folders to another user: needs root")
UID, GID = 4242, 4343
MID, OTHER = "0123456789abcdef0123456789abcdef", "f" * 32


def owner(path: Path) -> tuple:
    info = os.lstat(path)
    return info.st_uid, info.st_gid


def test_root_s_folders_under_the_devices_folders_are_handed_over(tmp_path):
    dest = tmp_path / "results"
    experiment = dest / MID / "ETHOSCOPE_004" / "2025-03-08_10-00-00"
    experiment.mkdir(parents=True)
    (experiment / "x.db").write_text("root's copy")
    os.chmod(experiment, 0o555)                             # as a device's -p may have left it
    (dest / ".ethoscope-backup" / "raw").mkdir(parents=True)
    theirs = dest / OTHER / "ETHOSCOPE_005"
    theirs.mkdir(parents=True)
    os.chown(theirs, 1234, 1234)                            # another user's: left alone
    for name in ("lost+found", ".cache", "notes"):           # not a device's folder: left alone
        (dest / name).mkdir()
    done = reclaim(dest, UID, GID)
    assert done.complete and not done.problem
    for path in (dest, dest / MID, experiment.parent, experiment, dest / ".ethoscope-backup",
                 dest / ".ethoscope-backup" / "raw", dest / OTHER):
        assert owner(path) == (UID, GID), path
    assert stat.S_IMODE(os.stat(experiment).st_mode) == 0o755
    assert owner(experiment / "x.db") == (0, 0)              # files keep their owner
    assert owner(theirs) == (1234, 1234)
    assert all(owner(dest / name) == (0, 0) for name in ("lost+found", ".cache", "notes"))
    assert done.handed == 6 and done.seen == 7            # (the destination itself is not counted)
    assert reclaim(dest, UID, GID).handed == 0              # nothing left to do


def test_links_are_never_followed(tmp_path):
    dest = tmp_path / "results"
    (dest / MID).mkdir(parents=True)
    outside = tmp_path / "etc-like"
    (outside / "sub").mkdir(parents=True)
    os.symlink(outside, dest / MID / "link")
    os.symlink(outside, dest / OTHER)                        # a device folder that is a link
    reclaim(dest, UID, GID)
    assert owner(outside) == (0, 0) and owner(outside / "sub") == (0, 0)
    assert owner(dest / MID / "link") == (0, 0)


def test_folders_without_sub_folders_are_not_listed(tmp_path, monkeypatch):
    """The link count of a folder says whether it has sub-folders (2: none): the folders holding a
    device's files (thousands of chunks) are never read."""
    dest = tmp_path / "videos"
    for date in ("2025-03-08_10-00-00", "2025-03-09_10-00-00"):
        folder = dest / MID / "ETHOSCOPE_004" / date
        folder.mkdir(parents=True)
        for n in range(50):
            (folder / f"{n:05d}.h264").write_text("")
    if os.stat(dest / MID / "ETHOSCOPE_004" / date).st_nlink != 2:
        pytest.fail("this file system does not count sub-folders in the link count; the test needs one that does")
    listed = []
    real = os.scandir
    monkeypatch.setattr(reclaiming.os, "scandir", lambda target: listed.append(target) or real(target))
    done = reclaim(dest, UID, GID)
    assert done.seen == 4 and done.handed == 4              # the two dates too, without listing them
    assert len(listed) == 3                                  # the destination, the device, its name


def test_the_walk_is_bounded(tmp_path):
    dest = tmp_path / "results"
    (dest / MID / "a" / "b").mkdir(parents=True)
    ticks = iter(range(0, 1000, 10))
    done = reclaim(dest, UID, GID, budget=15, clock=lambda: next(ticks))
    assert not done.complete and done.seen < 3
    deep = dest / OTHER
    for level in range(reclaiming.MAX_DEPTH + 3):
        deep = deep / "d"
    deep.mkdir(parents=True)
    done = reclaim(dest, UID, GID)
    assert not done.complete and owner(deep) == (0, 0)


def test_the_destination_is_created_and_handed_over_unless_it_is_the_system_s(tmp_path):
    dest = tmp_path / "srv" / "ethoscope" / "results"
    assert reclaim(dest, UID, GID).problem == ""
    assert dest.is_dir() and owner(dest) == (UID, GID) and owner(dest.parent) == (0, 0)
    assert may_own(Path("/srv/ethoscope")) and may_own(Path("/mnt/disk/results"))
    for path in ("/", "/srv", "/mnt", "/home/lab/results", "/var/lib/x", "/etc/x", "/usr/share/x", "relative/x"):
        assert not may_own(Path(path)), path
    assert "folder of the system" in reclaim(Path("/var/lib/ethoscope-no-such-destination"), UID, GID).problem
