"""Configuration: defaults, upstream fallback, validation messages naming file, line and key."""
import dataclasses
import json

import pytest

from ethoscope_rsync.config.load import ConfigError, credential_key, load_config
from ethoscope_rsync.config.syntax import parse_rate, parse_size


def write(tmp_path, text, name="backup.conf"):
    path = tmp_path / name
    path.write_text(text)
    return path


def no_upstream(tmp_path):
    return f"[paths]\nupstream_config = {tmp_path}/absent.json\n"


def test_defaults_when_file_sets_nothing(tmp_path):
    config = load_config(write(tmp_path, no_upstream(tmp_path)))
    assert str(config.paths.results) == "/ethoscope_data/results"
    assert str(config.paths.videos) == "/ethoscope_data/videos"
    assert str(config.paths.status_file) == "/run/ethoscope-backup/status.json"
    assert str(config.ssh.known_hosts) == "/var/lib/ethoscope-backup/known_hosts"
    assert config.node.server == ("localhost", 80) and config.ssh.user == "ethoscope"
    assert config.ssh.host_key_policy == "accept-new"
    assert config.kinds() == ("results", "videos")
    assert config.transfer.jobs == 16 and config.transfer.bwlimit == 0


def test_upstream_json_folders_used_when_keys_unset(tmp_path):
    upstream = tmp_path / "ethoscope.conf"
    upstream.write_text(json.dumps({"folders": {"results": {"path": "/srv/r"}, "video": {"path": "/srv/v"}}}))
    config = load_config(write(tmp_path, f"[paths]\nupstream_config = {upstream}\n"))
    assert (str(config.paths.results), str(config.paths.videos)) == ("/srv/r", "/srv/v")
    config = load_config(write(tmp_path, f"[paths]\nupstream_config = {upstream}\nresults = /data/results\n"))
    assert str(config.paths.results) == "/data/results" and str(config.paths.videos) == "/srv/v"


def test_videos_derived_next_to_results(tmp_path):
    config = load_config(write(tmp_path, no_upstream(tmp_path) + "results = /data/x/results\n"))
    assert str(config.paths.videos) == "/data/x/videos"


def test_config_is_immutable(tmp_path):
    config = load_config(write(tmp_path, no_upstream(tmp_path)))
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.transfer.jobs = 9


@pytest.mark.parametrize("text, expected", [
    ("[paths]\nresult = /x\n", "backup.conf:2: unknown key [paths] result"),
    ("[transfer]\njobs = lots\n", "backup.conf:2: [transfer] jobs"),
    ("[transfer]\n\njobs = 0\n", "backup.conf:3: [transfer] jobs"),
    ("[ssh]\nhost_key_policy = maybe\n", "[ssh] host_key_policy"),
    ("[transfer\n", "backup.conf:1: cannot parse"),
    ("[bogus]\nx = 1\n", "unknown"),
    ("[devices]\n../../x = 169.254.1.1\n", "invalid device name"),
    ("[devices]\nETHOSCOPE_001 = -oProxyCommand=x\n", "invalid address"),
    ("[transfer]\nmin_free = a lot\n", "[transfer] min_free: not a size"),
    ("[paths]\nresults = relative/path\n", "must be an absolute path"),
])
def test_bad_files_name_file_line_and_key(tmp_path, text, expected):
    with pytest.raises(ConfigError) as error:
        load_config(write(tmp_path, text))
    assert expected in str(error.value)
    assert str(tmp_path) in str(error.value)


def test_missing_explicit_file_is_an_error(tmp_path):
    with pytest.raises(ConfigError, match="no such configuration file"):
        load_config(tmp_path / "nope.conf")


def test_static_devices(tmp_path):
    config = load_config(write(tmp_path, no_upstream(tmp_path) +
                               "[devices]\nETHOSCOPE_004 = 169.254.1.4\nETHOSCOPE_007 = eth7.local\n"))
    assert [(d.name, d.address, d.source) for d in config.devices] == [
        ("ETHOSCOPE_004", "169.254.1.4", "config"), ("ETHOSCOPE_007", "eth7.local", "config")]


def test_sizes_and_rates():
    assert parse_size("1G") == 1 << 30 and parse_size("500M") == 500 << 20 and parse_size("0") == 0
    assert parse_rate("") == 0 and parse_rate("1500") == 1500 and parse_rate("10M") == 10240
    with pytest.raises(ValueError):
        parse_size("-3")


def test_credential_directory_wins(tmp_path, monkeypatch):
    config = load_config(write(tmp_path, no_upstream(tmp_path)))
    (tmp_path / "ssh-key").write_text("k")
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(tmp_path))
    assert credential_key(config) == tmp_path / "ssh-key"
    monkeypatch.delenv("CREDENTIALS_DIRECTORY")
    assert str(credential_key(config)) == "/etc/ethoscope/keys/id_rsa"


def upstream_dir(tmp_path, folders):
    folder = tmp_path / "etc-ethoscope"
    folder.mkdir()
    (folder / "ethoscope.conf").write_text(json.dumps({"folders": folders}))
    return folder


def test_config_dir_as_upstream_reads_its_ethoscope_conf(tmp_path, monkeypatch):
    """-c DIR (upstream's command line): DIR/ethoscope.conf gives the destinations; backup.conf
    comes from the default path, whose own keys still win."""
    folder = upstream_dir(tmp_path, {"results": {"path": "/srv/r"}, "video": {"path": "/srv/v"}})
    monkeypatch.setattr("ethoscope_rsync.config.load.DEFAULT_CONFIG", tmp_path / "absent.conf")
    config = load_config(folder)
    assert (str(config.paths.results), str(config.paths.videos)) == ("/srv/r", "/srv/v")
    assert config.source == str(tmp_path / "absent.conf")
    default = write(tmp_path, "[paths]\nresults = /data/results\n", name="default.conf")
    monkeypatch.setattr("ethoscope_rsync.config.load.DEFAULT_CONFIG", default)
    config = load_config(folder)
    assert (str(config.paths.results), str(config.paths.videos)) == ("/data/results", "/srv/v")


def test_config_dir_without_video_path_derives_videos(tmp_path, monkeypatch):
    folder = upstream_dir(tmp_path, {"results": {"path": "/srv/x/results"}})
    monkeypatch.setattr("ethoscope_rsync.config.load.DEFAULT_CONFIG", tmp_path / "absent.conf")
    assert str(load_config(folder).paths.videos) == "/srv/x/videos"


@pytest.mark.parametrize("content, expected", [(None, "no such file"), ("{not json", "cannot read")])
def test_config_dir_without_a_readable_ethoscope_conf_is_an_error(tmp_path, monkeypatch, content, expected):
    folder = tmp_path / "empty"
    folder.mkdir()
    if content is not None:
        (folder / "ethoscope.conf").write_text(content)
    monkeypatch.setattr("ethoscope_rsync.config.load.DEFAULT_CONFIG", tmp_path / "absent.conf")
    with pytest.raises(ConfigError, match=expected) as error:
        load_config(folder)
    assert str(folder / "ethoscope.conf") in str(error.value)


def test_config_file_still_accepted(tmp_path):
    path = write(tmp_path, no_upstream(tmp_path) + "results = /data/results\n")
    assert str(load_config(path).paths.results) == "/data/results"
