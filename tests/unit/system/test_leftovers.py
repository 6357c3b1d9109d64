"""Folders named for their process: the next run removes those whose process is gone, and only those."""
import os
import stat
import subprocess

from ethoscope_rsync.system import leftovers


def _dead_pid():
    child = subprocess.Popen(["true"])
    child.wait()
    return child.pid


def test_owner_pid_reads_only_our_names():
    assert leftovers.owner_pid("ssh-1234-ab_c9", "ssh") == 1234
    assert leftovers.owner_pid("ssh-1234-ab_c9", "credentials") == 0
    for name in ("ssh-0-abc", "ssh-12x-abc", "ssh-1234", "ssh-1234-", "ssh-1234-a/b", "xssh-12-a", "ssh-12345678901-a"):
        assert leftovers.owner_pid(name, "ssh") == 0, name


def test_sweep_removes_the_dead_processes_folders_only(tmp_path):
    dead = _dead_pid()
    gone = tmp_path / f"ssh-{dead}-aaa"
    (gone / "inner").mkdir(parents=True)
    mine = tmp_path / f"ssh-{os.getpid()}-bbb"
    mine.mkdir()
    other_kind = tmp_path / f"credentials-{dead}-ccc"
    other_kind.mkdir()
    stranger = tmp_path / f"ssh-{dead}x-ddd"
    stranger.mkdir()
    target = tmp_path / "target"
    target.mkdir()
    (target / "keep").write_text("x")
    (tmp_path / f"ssh-{dead}-link").symlink_to(target)
    assert leftovers.sweep(tmp_path, "ssh") == [gone.name]
    assert not gone.exists() and mine.exists() and other_kind.exists() and stranger.exists()
    assert (target / "keep").exists()                  # a link is never followed


def test_a_link_inside_a_dead_folder_is_removed_not_followed(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "precious").write_text("x")
    gone = tmp_path / "run" / f"ssh-{_dead_pid()}-aaa"
    gone.mkdir(parents=True)
    (gone / "socket").symlink_to(outside)
    leftovers.sweep(tmp_path / "run", "ssh")
    assert not gone.exists() and (outside / "precious").exists()


def test_scratch_is_private_named_for_this_process_and_sweeps_first(tmp_path):
    gone = tmp_path / f"ssh-{_dead_pid()}-aaa"
    gone.mkdir()
    made = leftovers.scratch(tmp_path, "ssh")
    assert leftovers.owner_pid(made.name, "ssh") == os.getpid()
    assert stat.S_IMODE(made.stat().st_mode) == 0o700 and not gone.exists()


def test_process_alive():
    assert leftovers.process_alive(os.getpid()) and leftovers.process_alive(0)
    assert not leftovers.process_alive(_dead_pid())
