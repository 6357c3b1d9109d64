"""The settings table is the one source of every setting: the Config record, the file's checks and
the command line follow it."""
import dataclasses
import typing

import pytest

from ethoscope_rsync.commands.cli import apply_options, build_parser
from ethoscope_rsync.config import record
from ethoscope_rsync.config.load import ConfigError, load_config
from ethoscope_rsync.config.settings import BY_NAME, SECTIONS, SETTINGS


@pytest.mark.parametrize("section", sorted(record.SECTION_RECORDS))
def test_each_section_record_has_the_tables_keys_and_types(section):
    fields = typing.get_type_hints(record.SECTION_RECORDS[section])
    keys = [s.key for s in SETTINGS if s.section == section]
    assert list(fields) == keys
    for key in keys:
        python = BY_NAME[(section, key)].kind.python
        assert fields[key] is python or python in typing.get_args(fields[key]), (section, key, fields[key])


def test_every_section_of_the_file_is_a_record_or_devices():
    assert set(SECTIONS) == set(record.SECTION_RECORDS) | {"devices"}


@pytest.mark.parametrize("setting", SETTINGS, ids=lambda s: s.name)
def test_every_default_is_valid(setting):
    value = setting.value
    assert value is None or isinstance(value, setting.kind.python) or setting.kind.python is float
    for bound in (setting.low, setting.high):
        assert (bound is None) == (setting.low is None) == (setting.high is None)


def _file(tmp_path, text):
    path = tmp_path / "backup.conf"
    path.write_text(f"[paths]\nupstream_config = {tmp_path}/absent.json\n" + text)
    return path


@pytest.mark.parametrize("text, expected", [
    ("[transfer]\njob = 3\n", "unknown key [transfer] job (did you mean jobs?)"),
    ("[transfers]\njobs = 3\n", "unknown section [transfers] (did you mean transfer?)"),
    ("[transfer]\nbwlimit = 10 MB/s\n", "a rate is per second already: write e.g. 10M or 800K"),
    ("[alert]\nmail_to = a@lab.org, b@lab.org\n", ""),
    ("[ssh]\nuser = a, b\n", "one value expected, not a list (put a value with a comma in quotes)"),
    ("[status]\nlisten = nonsense\n", "[status] listen: not HOST:PORT"),
    ("[node]\nserver = node.lab:99999\n", "[node] server: not a port"),
    ("[transfer]\njobs = 0\n", "must be between 1 and 256, not '0'"),
    ("[ssh]\nhost_key_policy = maybe\n", "must be one of accept-new, yes, no"),
])
def test_what_a_person_wrote_wrong_is_named_with_a_hint(tmp_path, text, expected):
    if not expected:
        assert load_config(_file(tmp_path, text)).alert.mail_to == ("a@lab.org", "b@lab.org")
        return
    with pytest.raises(ConfigError) as error:
        load_config(_file(tmp_path, text))
    assert expected in str(error.value) and str(tmp_path) in str(error.value)


@pytest.mark.parametrize("argv, expected", [
    (["run", "-j", "0"], "-j/--jobs: must be between 1 and 256"),
    (["run", "--bwlimit", "10M/s"], "--bwlimit: not a rate"),
    (["serve", "--listen", "nowhere"], "--listen: not HOST:PORT"),
    (["daemon", "--interval", "0.5"], "--interval: must be between 1 and 86400"),
])
def test_an_option_is_checked_as_its_setting_is(tmp_path, argv, expected):
    config = load_config(_file(tmp_path, ""))
    with pytest.raises(ConfigError, match=expected.replace("/", ".")):
        apply_options(config, build_parser().parse_args(argv))


def test_options_become_typed_settings(tmp_path):
    config = load_config(_file(tmp_path, ""))
    changed = apply_options(config, build_parser().parse_args(
        ["run", "-j", "3", "--bwlimit", "10M", "-i", "", "--results-only", "-r", "relative/r"]))
    assert (changed.transfer.jobs, changed.transfer.bwlimit, changed.node.server, changed.transfer.what) == \
        (3, 10240, None, "results")
    assert changed.paths.results.is_absolute() and changed.paths.videos == changed.paths.results.parent / "videos"
    assert config.transfer.jobs == 16          # the loaded record is never changed
    with pytest.raises(dataclasses.FrozenInstanceError):
        changed.transfer.jobs = 4
