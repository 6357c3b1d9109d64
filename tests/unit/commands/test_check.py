"""The findings of ``ethoscope-backup check`` that need no device: symbolic links under a destination."""
import os

from ethoscope_rsync.commands.check import check_links

MID, OTHER = "0123456789abcdef0123456789abcdef", "f" * 32


def test_no_links_is_ok(tmp_path):
    (tmp_path / MID / "x").mkdir(parents=True)
    assert check_links(tmp_path) == ("ok", f"no symbolic links under {tmp_path}")
    assert check_links(tmp_path / "missing") == ("ok", f"no symbolic links under {tmp_path / 'missing'} "
                                                       "(not there yet)")


def test_a_link_leading_out_of_its_device_folder_fails_and_is_named(tmp_path):
    (tmp_path / MID / "x").mkdir(parents=True)
    (tmp_path / OTHER / "y").mkdir(parents=True)
    os.symlink(f"../../{OTHER}/y", tmp_path / MID / "x" / "z")
    os.symlink("x", tmp_path / MID / "inside")
    level, text = check_links(tmp_path)
    assert level == "FAIL"
    assert text.startswith(f"1 symbolic link(s) under {tmp_path} lead out of their device's folder: "
                           f"{MID}/x/z -> ../../{OTHER}/y; a pass refuses to write through them")
    assert "inside" not in text


def test_links_staying_inside_are_listed(tmp_path):
    (tmp_path / MID / "x").mkdir(parents=True)
    os.symlink("x", tmp_path / MID / "inside")
    assert check_links(tmp_path) == ("ok", f"1 symbolic link(s) under {tmp_path}, each staying in its "
                                           f"device's folder: {MID}/inside -> x")


def test_a_walk_cut_by_its_budget_says_so(tmp_path):
    (tmp_path / MID).mkdir()
    level, text = check_links(tmp_path, budget=-1)
    assert level == "warn" and text == f"no symbolic links under {tmp_path} (looked for -1s, not everywhere)"
