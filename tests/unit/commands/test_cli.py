"""Command line parsing, option overrides, exit codes, the pass lock."""
import json
import os
import subprocess
from pathlib import Path

import pytest

from ethoscope_rsync.commands.cli import apply_options, build_parser, main, normalise_argv
from ethoscope_rsync.config.load import ConfigError, load_config
from ethoscope_rsync.system.exits import Busy
from ethoscope_rsync.state.store import pass_lock

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture
def conf(tmp_path):
    path = tmp_path / "backup.conf"
    path.write_text(f"[paths]\nupstream_config = {tmp_path}/none\nstate_dir = {tmp_path}/state\n"
                    f"status_file = {tmp_path}/run/status.json\n")
    return path


def parse(*argv):
    return build_parser().parse_args(normalise_argv(list(argv)))


def test_run_is_the_default_command():
    assert normalise_argv([]) == ["run"]
    assert normalise_argv(["-e", "004"]) == ["run", "-e", "004"]
    assert normalise_argv(["status", "--json"]) == ["status", "--json"]
    assert parse("-e", "4").command == "run"


def test_options_override_the_file(conf):
    args = parse("-r", "/d/results", "-i", "169.254.1.1:81", "-e", "004,7", "--videos-only", "-s", "-j", "8",
                 "--bwlimit", "2M", "-n", "-c", str(conf))
    config = apply_options(load_config(conf), args)
    assert (str(config.paths.results), str(config.paths.videos)) == ("/d/results", "/d/videos")
    assert config.node.server == ("169.254.1.1", 81) and config.selection == (4, 7)
    assert config.transfer.what == "videos" and config.transfer.safe
    assert config.transfer.jobs == 8 and config.transfer.bwlimit == 2048
    assert config.dry_run


@pytest.mark.parametrize("argv", [["-j", "0"], ["--bwlimit", "fast"], ["-e", "x"]])
def test_bad_options_are_config_errors(conf, argv):
    with pytest.raises((ConfigError, ValueError)):
        apply_options(load_config(conf), parse(*argv))


def test_main_returns_2_with_one_line(conf, capsys):
    assert main(["-c", str(conf), "-e", "../x"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "configuration error" in err[0]


def test_usage_error_exit_code():
    result = subprocess.run(["/usr/bin/python3", "-m", "ethoscope_rsync", "run", "--bogus"], cwd=ROOT,
                            capture_output=True, text=True)
    assert result.returncode == 2 and "Traceback" not in result.stderr


@pytest.mark.parametrize("command", ["run", "serve", "status", "check", "daemon", "forget-host", "alert", "verify"])
def test_version_everywhere(command, capsys):
    with pytest.raises(SystemExit) as done:
        build_parser().parse_args([command, "--version"])
    assert done.value.code == 0 and "ethoscope-backup" in capsys.readouterr().out


def test_lock_refuses_a_second_holder(tmp_path):
    lock = tmp_path / "state" / "lock"
    with pass_lock(lock):
        with pytest.raises(Busy, match="already running"):
            with pass_lock(lock):
                pass
    with pass_lock(lock):      # released: usable again
        pass


def test_status_command_prints_the_pass_a_table_and_the_notes(tmp_path, capsys):
    from tests.fixtures.status import build, scripted_pass
    from ethoscope_rsync.render.terminal import terminal_status
    assert terminal_status(None, None, now=1000.0, stale_after=86400.0, horizon_days=14.0) == [
        "no backup pass has run yet"]
    status, history = build(scripted_pass(2, chunks=1, now=1000.0, failing=0.5))
    lines = terminal_status(status, history, now=1000.0, stale_after=86400.0, horizon_days=14.0)
    assert lines[0].startswith("last pass: failed — ")
    assert lines[1].split() == ["DEVICE", "STATE", "LAST", "SUCCESS", "AGE", "LAG", "COPIED", "CIPHER", "ERROR"]
    assert lines[2].startswith("ETHOSCOPE_001  completed") and lines[3].startswith("ETHOSCOPE_002  error (stale)")
    assert lines[1].index("STATE") == lines[2].index("completed") == lines[3].index("error")     # one column
    assert lines[3].endswith("error in rsync protocol data stream (connection lost)")
    conf = tmp_path / "backup.conf"
    (tmp_path / "status.json").write_text(json.dumps(status))
    (tmp_path / "history.json").write_text(json.dumps(history))
    conf.write_text(f"[paths]\nstatus_file = {tmp_path}/status.json\nstate_dir = {tmp_path}\n"
                    f"results = {tmp_path}/r\nvideos = {tmp_path}/v\nupstream_config = {tmp_path}/none\n")
    assert main(["status", "-c", str(conf)]) == 1                  # a device failing (and both stale by now)
    printed = capsys.readouterr().out.splitlines()
    assert printed[0].startswith("0/2 safe \u2014 no pass has ended for ")            # overdue first
    assert "; ETHOSCOPE_002 failing since " in printed[0] and "; ETHOSCOPE_001 not seen for " in printed[0]
    assert printed[2].startswith("last pass: failed") and "ETHOSCOPE_001" in printed[4]


def _status_files(tmp_path, status, history, extra=""):
    conf = tmp_path / "backup.conf"
    (tmp_path / "status.json").write_text(json.dumps(status))
    (tmp_path / "history.json").write_text(json.dumps(history))
    conf.write_text(f"[paths]\nstatus_file = {tmp_path}/status.json\nstate_dir = {tmp_path}\n"
                    f"results = {tmp_path}/r\nvideos = {tmp_path}/v\nupstream_config = {tmp_path}/none\n{extra}")
    return conf


def test_status_exit_codes_for_checks(tmp_path, capsys):
    """0: every device safe and passes on time; 1: overdue (or a problem); 3: nothing to judge."""
    import time
    from tests.fixtures.status import build, scripted_pass
    status, history = build(scripted_pass(2, chunks=1, now=time.time() - 700, failing=0))
    assert main(["status", "-c", str(_status_files(tmp_path, status, history))]) == 0
    assert capsys.readouterr().out.startswith("2/2 safe \u2014 last pass ended ")
    late = _status_files(tmp_path, status, history, "[status]\noverdue_after = 120\n")
    assert main(["status", "-c", str(late)]) == 1
    assert "(overdue)" in capsys.readouterr().out.splitlines()[0]
    assert main(["status", "--json", "-c", str(late)]) == 1
    assert json.loads(capsys.readouterr().out)["verdict"]["overdue"] is True
    (tmp_path / "status.json").unlink()
    (tmp_path / "history.json").unlink()
    assert main(["status", "-c", str(late)]) == 3
    assert capsys.readouterr().out == "unknown: no backup pass has run yet\n"


def test_bandwidth_budget_is_shared():
    from ethoscope_rsync.backup.pool import share_bandwidth
    assert share_bandwidth(0, 16, 3) == 0                 # no limit
    assert share_bandwidth(8000, 4, 10) == 2000           # four transfers at once share the total
    assert share_bandwidth(8000, 16, 2) == 4000           # only two devices: two transfers
    assert share_bandwidth(8000, 4, 10, trees=2) == 1000  # each device's results beside its videos
    assert share_bandwidth(3, 16, 16) == 1                # never 0 (which would mean unlimited)


def test_upstream_config_dir_on_the_command_line(tmp_path, monkeypatch):
    """The upstream tool's `-c /etc/ethoscope` (a folder holding ethoscope.conf) works, in --help too."""
    folder = tmp_path / "etc-ethoscope"
    folder.mkdir()
    (folder / "ethoscope.conf").write_text('{"folders": {"results": {"path": "/srv/r"}, "video": {"path": "/srv/v"}}}')
    monkeypatch.setattr("ethoscope_rsync.config.load.DEFAULT_CONFIG", tmp_path / "absent.conf")
    args = parse("-c", str(folder), "-e", "4")
    config = apply_options(load_config(args.config), args)
    assert (str(config.paths.results), str(config.paths.videos)) == ("/srv/r", "/srv/v")
    assert main(["-c", str(tmp_path / "nowhere"), "-n"]) == 2
    help_text = build_parser()._subparsers._group_actions[0].choices["run"].format_help()
    assert "FILE|DIR" in help_text and "ethoscope.conf" in help_text


def test_the_node_s_switches_narrow_what_a_pass_copies(tmp_path, conf):
    switches = tmp_path / "switches"
    switches.mkdir()
    args = parse("--switches", str(switches))
    assert apply_options(load_config(conf), args).transfer.what == "unified"          # none on: as configured
    (switches / "ethoscope_backup_video").mkdir()
    assert apply_options(load_config(conf), args).transfer.what == "videos"
    assert apply_options(load_config(conf), parse("--results-only", "--switches", str(switches))).transfer.what == ""
    assert main(["run", "-c", str(conf), "--results-only", "--switches", str(switches)]) == 0   # nothing to copy


# ----------------------------------------------------------------------------- root hands over
HANDED_OVER = [  # argv, the command body that must run after the hand-over, what it needs of the key
    (["run"], "ethoscope_rsync.backup.passes.run_pass", "required"),
    (["run", "-n"], "ethoscope_rsync.backup.preview.preview_pass", "required"),
    (["check"], "ethoscope_rsync.commands.check.run_checks", "optional"),
    (["forget-host", "004"], "ethoscope_rsync.commands.check.forget_host", "none"),
    (["daemon"], "ethoscope_rsync.commands.daemon.run_daemon", "required"),
    (["serve"], "ethoscope_rsync.web.adapter.serve", "none"),
    (["alert"], "ethoscope_rsync.alerts.report.run_alerts", "none"),
    (["verify", "--since", "7"], "ethoscope_rsync.backup.verify.run_verify", "none"),
    (["offsite"], "ethoscope_rsync.commands.offsite.offsite_command", "optional"),
]


@pytest.mark.parametrize("argv, body, key", HANDED_OVER, ids=lambda v: " ".join(v) if isinstance(v, list) else "")
def test_every_command_root_starts_runs_as_the_service_user(conf, monkeypatch, argv, body, key):
    """Root on a packaged node (state dir owned by the service user): every command but `status`
    switches user before its body runs, and takes the SSH key along only where it needs it."""
    events = []
    monkeypatch.setattr("ethoscope_rsync.system.privileges.service_owner", lambda config: 4242)
    monkeypatch.setattr("ethoscope_rsync.system.privileges.become",
                        lambda config, uid, need, others=(): events.append(("become", uid, need, others)))
    monkeypatch.setattr(body, lambda *a, **k: events.append("body") or 0)
    monkeypatch.setattr("ethoscope_rsync.commands.reclaim.run_reclaim", lambda config: events.append("reclaim"))
    monkeypatch.setattr("ethoscope_rsync.backup.keywait.missing_key", lambda config: None)    # the key is there
    assert main([argv[0], "-c", str(conf), *argv[1:]]) == 0
    # a pass root starts first hands root's folders under the destinations over (see reclaim)
    first = ["reclaim"] if argv in (["run"], ["daemon"]) and os.geteuid() == 0 else []
    assert events == first + [("become", 4242, key, ()), "body"]


@pytest.mark.parametrize("argv, key", [(["offsite"], "optional"), (["verify"], "optional"), (["check"], "optional"),
                                       (["run"], "required"), (["alert"], "none")])
def test_commands_reaching_the_second_copy_take_its_password_along(conf, tmp_path, monkeypatch, argv, key):
    """With an sftp repository configured, the commands that reach it get the password (and the
    backend's variables) handed over too, and the SSH key where they may need it; the others don't."""
    conf.write_text(conf.read_text() + "[offsite]\nrepository = sftp:nas:/srv/restic\n"
                    f"password_file = {tmp_path}/pw\nenvironment_file = {tmp_path}/env\n")
    events = []
    monkeypatch.setattr("ethoscope_rsync.system.privileges.service_owner", lambda config: 4242)
    monkeypatch.setattr("ethoscope_rsync.system.privileges.become",
                        lambda config, uid, need, others=(): events.append((need, others)))
    for body in ("ethoscope_rsync.commands.offsite.offsite_command", "ethoscope_rsync.backup.verify.run_verify",
                 "ethoscope_rsync.offsite.repository.verify_repository", "ethoscope_rsync.commands.check.run_checks",
                 "ethoscope_rsync.backup.passes.run_pass", "ethoscope_rsync.alerts.report.run_alerts"):
        monkeypatch.setattr(body, lambda *a, **k: 0)
    monkeypatch.setattr("ethoscope_rsync.commands.reclaim.run_reclaim", lambda config: None)
    monkeypatch.setattr("ethoscope_rsync.backup.keywait.missing_key", lambda config: None)    # the key is there
    main([argv[0], "-c", str(conf)])
    reaches = argv[0] in ("offsite", "verify", "check")
    assert events == [(key, (("restic-password", tmp_path / "pw"), ("restic-environment", tmp_path / "env"))
                       if reaches else ())]


def test_status_only_reads_and_is_not_handed_over(conf, monkeypatch, capsys):
    monkeypatch.setattr("ethoscope_rsync.system.privileges.service_owner", lambda config: 4242)
    monkeypatch.setattr("ethoscope_rsync.system.privileges.become", lambda *a: pytest.fail("status handed over"))
    assert main(["status", "-c", str(conf)]) == 3          # nothing to judge yet


def test_a_failed_hand_over_is_one_line_and_exit_2(conf, monkeypatch, capsys):
    from ethoscope_rsync.system.privileges import IdentityError

    def refuse(config, uid, need, others=()):
        raise IdentityError("cannot hand the SSH key /k to ethoscope-backup: No such file or directory")
    monkeypatch.setattr("ethoscope_rsync.system.privileges.service_owner", lambda config: 4242)
    monkeypatch.setattr("ethoscope_rsync.system.privileges.become", refuse)
    monkeypatch.setattr("ethoscope_rsync.backup.passes.run_pass", lambda *a: pytest.fail("ran without the hand-over"))
    monkeypatch.setattr("ethoscope_rsync.commands.reclaim.run_reclaim", lambda config: 0)
    assert main(["run", "-c", str(conf)]) == 2
    assert capsys.readouterr().err.count("\n") == 1


def test_check_reports_the_real_key_as_root_saw_it(conf, tmp_path, monkeypatch):
    """The key finding is made before the hand-over (the service user cannot read the original)."""
    from ethoscope_rsync.commands import check
    key = tmp_path / "id_rsa"
    key.write_text("k")
    key.chmod(0o644)
    conf.write_text(conf.read_text() + f"[ssh]\nkey = {key}\n")
    seen = {}
    monkeypatch.setattr("ethoscope_rsync.system.privileges.service_owner", lambda config: None)
    monkeypatch.setattr(check, "run_checks", lambda config, key_finding=None: seen.setdefault("k", key_finding) and 1)
    main(["check", "-c", str(conf)])
    assert seen["k"][0] == "FAIL" and "readable by others" in seen["k"][1]


# ----------------------------------------------------------------------------- forget-host
def test_forget_host_rewrites_through_a_private_temp_file(conf, tmp_path, monkeypatch):
    """A link planted at the old fixed temp name (or any name) is never written through; the file
    keeps its mode; nothing is left behind."""
    from ethoscope_rsync.commands.check import forget_host
    state = tmp_path / "state"
    state.mkdir()
    known = state / "known_hosts"
    known.write_text("ethoscope_004 ssh-ed25519 AAAA\nethoscope_004-0123 ssh-ed25519 AAAA\n"
                     "ethoscope_005 ssh-ed25519 BBBB\n")
    known.chmod(0o640)
    victim = tmp_path / "victim"
    victim.write_text("precious\n")
    (state / "known_hosts.tmp").symlink_to(victim)
    conf.write_text(conf.read_text() + f"[ssh]\nknown_hosts = {known}\n")
    lines = []
    assert forget_host(load_config(conf), "4", out=lines.append) == 0
    assert known.read_text() == "ethoscope_005 ssh-ed25519 BBBB\n" and "forgot 2" in lines[0]
    assert (known.stat().st_mode & 0o777) == 0o640 and not known.is_symlink()
    assert victim.read_text() == "precious\n"
    assert sorted(p.name for p in state.iterdir()) == ["known_hosts", "known_hosts.tmp", "lock"]   # (the pass lock)


def test_forget_host_replaces_a_planted_link_instead_of_writing_its_target(conf, tmp_path):
    from ethoscope_rsync.commands.check import forget_host
    victim = tmp_path / "victim"
    victim.write_text("ethoscope_004 ssh-ed25519 AAAA\nkeep me\n")
    known = tmp_path / "known_hosts"
    known.symlink_to(victim)
    conf.write_text(conf.read_text() + f"[ssh]\nknown_hosts = {known}\n")
    assert forget_host(load_config(conf), "ETHOSCOPE_004", out=lambda line: None) == 0
    assert victim.read_text() == "ethoscope_004 ssh-ed25519 AAAA\nkeep me\n"
    assert not known.is_symlink() and known.read_text() == "keep me\n"


def test_log_lines_escape_control_characters(capsys):
    from ethoscope_rsync.system.logs import log, setup
    setup()
    try:
        log.warning("file %s", "x\nE forged line \x1b[2Jy\udcff \\x0a")
        assert capsys.readouterr().err == "W file x\\x0aE forged line \\x1b[2Jy\\udcff \\\\x0a\n"
    finally:                      # leave the package logger as other tests expect it
        log.handlers.clear()
        log.propagate = True


def test_forget_host_never_removes_another_device_s_entry(conf, tmp_path):
    """forget-host ETHOSCOPE_0042 is refused (no device has that name); 042 forgets 042's key and
    pin only, never those of 1042 or of a name from before names had one form."""
    from ethoscope_rsync.commands.check import forget_host
    from ethoscope_rsync.state.history import DeviceHistory, History
    from ethoscope_rsync.state.store import load_history, save_history
    state = tmp_path / "state"
    state.mkdir(exist_ok=True)
    known = state / "known_hosts"
    others = "ethoscope_0042 ssh-ed25519 BBBB\nethoscope_1042 ssh-ed25519 CCCC\nethoscope_0420 ssh-ed25519 DDDD\n"
    known.write_text("ethoscope_042 ssh-ed25519 AAAA\n" + others)
    conf.write_text(f"[paths]\nupstream_config = {tmp_path}/none\nstate_dir = {state}\n[ssh]\nknown_hosts = {known}\n")
    config = load_config(conf)
    save_history(config.history_file, History(devices={
        key: DeviceHistory(id=key, name=name, pinned=True)
        for key, name in (("a" * 32, "ETHOSCOPE_042"), ("b" * 32, "ETHOSCOPE_0042"), ("c" * 32, "ETHOSCOPE_1042"))}))
    lines = []
    assert forget_host(config, "ETHOSCOPE_0042", out=lines.append) == 2 and "not one device" in lines[0]
    assert known.read_text().startswith("ethoscope_042 ")
    assert forget_host(config, "042", out=lines.append) == 0
    assert known.read_text() == others
    pinned = {e.name for e in load_history(config.history_file).devices.values() if e.pinned}
    assert pinned == {"ETHOSCOPE_0042", "ETHOSCOPE_1042"}
