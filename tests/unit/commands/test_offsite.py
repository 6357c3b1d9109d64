"""``ethoscope-backup offsite`` and ``verify`` on the command line: the options, the password root
creates for --init, and the second copy's check by a whole verify only."""
import stat

import pytest

from ethoscope_rsync.commands.cli import main
from ethoscope_rsync.commands import cli
from ethoscope_rsync.commands.offsite import ensure_password
from ethoscope_rsync.config.load import load_config


@pytest.fixture(autouse=True)
def _package_logger_as_found():
    """main() configures the package logger (logs.setup): other tests expect it as it was."""
    from ethoscope_rsync.system.logs import log
    handlers, propagate, level = list(log.handlers), log.propagate, log.level
    yield
    log.handlers[:], log.propagate = handlers, propagate
    log.setLevel(level)


@pytest.fixture
def conf(tmp_path):
    path = tmp_path / "backup.conf"
    path.write_text(f"[paths]\nupstream_config = {tmp_path}/none\nstate_dir = {tmp_path}/state\n"
                    f"[offsite]\nrepository = {tmp_path}/repo\npassword_file = {tmp_path}/keys/restic-password\n")
    return path


def test_one_of_init_dry_run_if_due(capsys):
    for argv in (["offsite", "--init"], ["offsite", "-n"], ["offsite", "--if-due"], ["offsite"]):
        cli.build_parser().parse_args(argv)
    with pytest.raises(SystemExit):
        cli.build_parser().parse_args(["offsite", "--init", "--dry-run"])
    assert "not allowed with argument" in capsys.readouterr().err


def test_init_as_root_creates_a_random_private_password_once(conf, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr("ethoscope_rsync.commands.offsite.os.geteuid", lambda: 0)
    config = load_config(conf)
    ensure_password(config)
    password = tmp_path / "keys" / "restic-password"
    first = password.read_text()
    assert len(first.strip()) >= 40 and stat.S_IMODE(password.stat().st_mode) == 0o600
    assert stat.S_IMODE(password.parent.stat().st_mode) == 0o700
    ensure_password(config)
    assert password.read_text() == first and capsys.readouterr().out.count("created a random password") == 1
    monkeypatch.setattr("ethoscope_rsync.commands.offsite.os.geteuid", lambda: 1000)
    password.unlink()
    ensure_password(config)                      # not root: the operator is told what to do by the run
    assert not password.exists()


def test_without_a_repository_init_and_dry_run_are_usage_errors(tmp_path, capsys):
    path = tmp_path / "backup.conf"
    path.write_text(f"[paths]\nupstream_config = {tmp_path}/none\nstate_dir = {tmp_path}/state\n")
    assert main(["offsite", "-c", str(path), "--init"]) == 2
    assert main(["offsite", "-c", str(path)]) == 0               # the timer's run: nothing configured, nothing to do
    assert "no [offsite] repository is set" in capsys.readouterr().out


@pytest.mark.parametrize("argv, checked", [(["verify"], True), (["verify", "--since", "7"], False),
                                           (["verify", "-e", "004"], False)])
def test_a_whole_verify_also_checks_the_repository(conf, monkeypatch, argv, checked):
    calls = []
    monkeypatch.setattr("ethoscope_rsync.system.privileges.service_owner", lambda config: None)
    monkeypatch.setattr("ethoscope_rsync.backup.verify.run_verify",
                        lambda config, since, stop: calls.append("node") or 0)
    monkeypatch.setattr("ethoscope_rsync.offsite.repository.verify_repository",
                        lambda config, stop: calls.append("repository") or 1)
    assert main([argv[0], "-c", str(conf), *argv[1:]]) == (1 if checked else 0)
    assert calls == ["node", "repository"] if checked else ["node"]
