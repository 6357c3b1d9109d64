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


class Systemctl:
    """`systemctl show -P ReadWritePaths` answering `paths` (or failing)."""

    def __init__(self, paths="", code=0):
        self.paths, self.code, self.argv = paths, code, None

    def run(self, argv, timeout):
        from ethoscope_rsync.system.execute import Result
        self.argv = argv
        return Result(tuple(argv), self.code, self.paths + "\n", "" if not self.code else "Failed to connect to bus")


def config_with(tmp_path, results, videos):
    from ethoscope_rsync.config.load import load_config
    path = tmp_path / "backup.conf"
    path.write_text(f"[paths]\nresults = {results}\nvideos = {videos}\nupstream_config = {tmp_path}/none\n")
    return load_config(path)


def test_a_destination_outside_the_pass_s_sandbox_fails(tmp_path):
    from ethoscope_rsync.commands.check import check_sandbox
    config = config_with(tmp_path, "/srv/lab/results", "/ethoscope_data/videos")
    systemctl = Systemctl("-/ethoscope_data/results -/ethoscope_data/videos")
    findings = check_sandbox(config, systemctl, systemd=tmp_path)
    assert systemctl.argv == ("systemctl", "show", "-P", "ReadWritePaths", "ethoscope-backup.service")
    assert findings[0][0] == "FAIL" and "destination /srv/lab/results is outside the backup pass's sandbox" \
        in findings[0][1] and "systemctl daemon-reload" in findings[0][1]
    assert findings[1] == ("ok", "destination /ethoscope_data/videos is open to the backup pass's sandbox")
    assert [f[0] for f in check_sandbox(config, Systemctl("-/srv/lab -/ethoscope_data/videos"), systemd=tmp_path)] \
        == ["ok", "ok"]


def test_the_sandbox_is_not_asked_about_without_systemd_or_said_when_it_cannot_be(tmp_path):
    from ethoscope_rsync.commands.check import check_sandbox
    config = config_with(tmp_path, "/home/lab/results", "/ethoscope_data/videos")
    assert check_sandbox(config, Systemctl(), systemd=tmp_path / "no-systemd") == []
    assert check_sandbox(config, Systemctl(code=1), systemd=tmp_path)[0][0] == "warn"
    findings = check_sandbox(config, Systemctl("/home/lab/results -/ethoscope_data/videos"), systemd=tmp_path)
    assert findings[0][0] == "FAIL" and "ProtectHome=yes" in findings[0][1]


def test_what_a_device_prints_reaches_the_terminal_inert(tmp_path, monkeypatch):
    """A device answering check's SSH login with terminal escapes and extra lines: shown, not obeyed."""
    from ethoscope_rsync.commands import check
    from ethoscope_rsync.config.devices import Device
    from ethoscope_rsync.system.execute import Result
    config = config_with(tmp_path, tmp_path / "r", tmp_path / "v")
    device = Device("ETHOSCOPE_004", "169.254.1.4")
    hostile = "unreadable: /x\x1b]0;owned\x07\x1b[2J\nok    everything is fine"
    monkeypatch.setattr(check.execute, "run", lambda argv, timeout: Result(tuple(argv), 0, hostile, ""))
    level, text = check.check_device(config, device, "/k")
    assert level == "FAIL" and "\x1b" not in text and "\n" not in text and "\\x1b]0;owned" in text
    monkeypatch.setattr(check.execute, "run", lambda argv, timeout: Result(tuple(argv), 255, "", "kex: \x1b[31mred\n"))
    level, text = check.check_device(config, device, "/k")
    assert level == "FAIL" and "\x1b" not in text and "\\x1b[31mred" in text
