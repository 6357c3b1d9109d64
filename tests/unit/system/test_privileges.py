"""Root hands a command the credentials it needs, as systemd's LoadCredential= does: the SSH key
where required or useful, and the second copy's password and backend variables."""
import os
import pwd
import stat
import subprocess

import pytest

from ethoscope_rsync.config.load import load_config
from ethoscope_rsync.system import privileges


@pytest.fixture
def config(tmp_path, monkeypatch):
    monkeypatch.delenv("CREDENTIALS_DIRECTORY", raising=False)
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    (tmp_path / "id_rsa").write_text("key")
    conf = tmp_path / "backup.conf"
    conf.write_text(f"[paths]\nupstream_config = {tmp_path}/none\nstatus_file = {tmp_path}/run/status.json\n"
                    f"[ssh]\nkey = {tmp_path}/id_rsa\n")
    return load_config(conf)


ME = pwd.getpwuid(os.getuid())       # chown to oneself needs no root


def test_the_key_and_the_readable_others_are_copied_privately(config, tmp_path):
    (tmp_path / "pw").write_text("secret\n")
    others = (("restic-password", tmp_path / "pw"), ("restic-environment", tmp_path / "absent"))
    handed = privileges._copy_credentials(config, ME, privileges.KEY_OPTIONAL, others)
    assert sorted(p.name for p in handed.iterdir()) == ["restic-password", "ssh-key"]
    assert (handed / "restic-password").read_text() == "secret\n" and (handed / "ssh-key").read_text() == "key"
    assert stat.S_IMODE((handed / "restic-password").stat().st_mode) == 0o600
    assert handed.parent == tmp_path / "run" / "private" and handed.name.startswith(f"credentials-{os.getpid()}-")
    assert stat.S_IMODE(handed.parent.stat().st_mode) == 0o700


def test_copies_a_killed_command_left_are_removed_by_the_next(config, tmp_path):
    """A command killed with SIGKILL keeps its copies; the next one started by root removes them."""
    dead = _a_dead_pid()
    private = tmp_path / "run" / "private"
    private.mkdir(parents=True)
    left = private / f"credentials-{dead}-abc123"
    left.mkdir()
    (left / "ssh-key").write_text("key")
    alive = private / f"credentials-{os.getpid()}-live99"      # a command still running keeps its own
    alive.mkdir()
    handed = privileges._copy_credentials(config, ME, privileges.KEY_REQUIRED, ())
    assert not left.exists() and alive.exists() and handed.exists()


def test_a_link_in_place_of_the_private_folder_is_refused(config, tmp_path):
    (tmp_path / "run").mkdir()
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "run" / "private").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(privileges.IdentityError, match="cannot hand credentials"):
        privileges._copy_credentials(config, ME, privileges.KEY_REQUIRED, ())
    assert not list((tmp_path / "elsewhere").iterdir())


def _a_dead_pid():
    child = subprocess.Popen(["true"])
    child.wait()
    return child.pid


def test_a_required_key_that_cannot_be_read_stops_the_hand_over(config, tmp_path):
    (tmp_path / "id_rsa").unlink()
    with pytest.raises(privileges.IdentityError, match="cannot hand the SSH key"):
        privileges._copy_credentials(config, ME, privileges.KEY_REQUIRED, ())
    assert privileges._copy_credentials(config, ME, privileges.KEY_OPTIONAL, ()) is None
    assert not list((tmp_path / "run" / "private").iterdir())          # nothing left behind
