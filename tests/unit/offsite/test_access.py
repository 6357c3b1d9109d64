"""How the node reaches its second copy: credentials before configured files, the backend's
variables checked, one line for what is missing."""
from pathlib import Path

import pytest

from ethoscope_rsync.config.load import load_config
from ethoscope_rsync.offsite import access


def config(tmp_path, offsite):
    path = tmp_path / "backup.conf"
    path.write_text(f"[paths]\nstate_dir = {tmp_path}/state\nupstream_config = {tmp_path}/none.json\n"
                    f"[ssh]\nkey = {tmp_path}/id_rsa\n[offsite]\n{offsite}")
    return load_config(path)


def test_a_local_repository(tmp_path, monkeypatch):
    monkeypatch.delenv("CREDENTIALS_DIRECTORY", raising=False)
    (tmp_path / "pw").write_text("secret\n")
    found = access.make_access(config(tmp_path, f"repository = /srv/r\npassword_file = {tmp_path}/pw\n"))
    assert (found.repository.text, found.password_file, found.cache_dir, found.sftp, found.environment) == (
        "/srv/r", tmp_path / "pw", tmp_path / "state" / "restic-cache", (), ())


def test_handed_credentials_win_and_an_empty_one_is_none(tmp_path, monkeypatch):
    handed = tmp_path / "credentials"
    handed.mkdir()
    (handed / "restic-password").write_text("from systemd\n")
    (handed / "ssh-key").write_text("\n")               # SetCredential=ssh-key:\n (no key): the configured one
    (handed / "restic-environment").write_text("B2_ACCOUNT_ID=7\n")
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(handed))
    found = access.make_access(config(tmp_path, "repository = sftp:nas:/srv/r\n"
                                                f"environment_file = {tmp_path}/env\n"))
    assert found.password_file == handed / "restic-password"
    assert found.sftp[:3] == ("ssh", "-i", str(tmp_path / "id_rsa")) and found.environment == (("B2_ACCOUNT_ID", "7"),)


@pytest.mark.parametrize("content, expected", [(None, "No such file or directory; as root, ethoscope-backup offsite "
                                                      "--init creates one"), ("\n  \n", "is empty")])
def test_a_missing_or_empty_password_is_one_line(tmp_path, monkeypatch, content, expected):
    monkeypatch.delenv("CREDENTIALS_DIRECTORY", raising=False)
    if content is not None:
        (tmp_path / "pw").write_text(content)
    with pytest.raises(access.Unusable) as error:
        access.make_access(config(tmp_path, f"repository = /srv/r\npassword_file = {tmp_path}/pw\n"))
    assert expected in error.value.message and "\n" not in error.value.message


def test_the_backend_variables():
    text = "# cloud\n\nAWS_ACCESS_KEY_ID=AK\nexport AWS_SECRET_ACCESS_KEY='s=cret'\nB2_ACCOUNT_KEY=\"k\"\n"
    assert access.parse_environment(text, "env") == (("AWS_ACCESS_KEY_ID", "AK"), ("AWS_SECRET_ACCESS_KEY", "s=cret"),
                                                     ("B2_ACCOUNT_KEY", "k"))
    for line, words in (("nonsense", "env:1: not NAME=VALUE"), ("lower=1", "env:1: not NAME=VALUE"),
                        ("RESTIC_PASSWORD=x", "RESTIC_PASSWORD cannot be set there"),
                        ("RESTIC_REPOSITORY=/elsewhere", "RESTIC_REPOSITORY cannot be set there"),
                        ("LD_PRELOAD=/tmp/x.so", "LD_PRELOAD cannot be set there"), ("PATH=/tmp", "PATH cannot")):
        with pytest.raises(access.Unusable, match=words):
            access.parse_environment(line, "env")


def test_a_too_big_environment_file_is_refused(tmp_path, monkeypatch):
    monkeypatch.delenv("CREDENTIALS_DIRECTORY", raising=False)
    (tmp_path / "pw").write_text("p\n")
    (tmp_path / "env").write_text("A=" + "x" * access.MAX_ENVIRONMENT)
    with pytest.raises(access.Unusable, match="more than"):
        access.make_access(config(tmp_path, f"repository = s3:host/bucket\npassword_file = {tmp_path}/pw\n"
                                            f"environment_file = {tmp_path}/env\n"))


def test_an_sftp_repository_needs_paths_restic_can_take(tmp_path, monkeypatch):
    monkeypatch.delenv("CREDENTIALS_DIRECTORY", raising=False)
    (tmp_path / "pw").write_text("p\n")
    conf = tmp_path / "backup.conf"
    conf.write_text(f"[paths]\nstate_dir = {tmp_path}/my state\nupstream_config = /none\n[offsite]\n"
                    f"repository = sftp:nas:/r\npassword_file = {tmp_path}/pw\n")
    with pytest.raises(access.Unusable, match="holds a space"):
        access.make_access(load_config(conf))
    assert Path(access.known_hosts(load_config(conf))).name == "offsite_known_hosts"
