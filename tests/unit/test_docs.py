"""The documentation keeps up with the code.

Every option of every subcommand and every subcommand is in ethoscope-backup(8); every key of the
settings table is in ethoscope-backup.conf(5) with its type, range and default, and the shipped
etc/backup.conf is what the table renders; the man pages format without
groff warnings; the shipped conffile loads and sets nothing (all comments and section headers),
and its commented values are the real defaults.
"""
import argparse
import dataclasses
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from ethoscope_rsync.commands import cli
from ethoscope_rsync.config.load import load_config
from ethoscope_rsync.config.settings import BY_NAME, SECTIONS, SETTINGS, conffile

ROOT = Path(__file__).resolve().parents[2]
MAN8 = ROOT / "man" / "ethoscope-backup.8"
MAN5 = ROOT / "man" / "ethoscope-backup.conf.5"
CONFFILE = ROOT / "etc" / "backup.conf"
MAN_PAGES = (MAN8, MAN5)


def roff_text(path: Path) -> str:
    """The page's source with roff escapes for '-' undone and font changes removed."""
    text = path.read_text(encoding="utf-8")
    text = text.replace("\\-", "-").replace("\\%", "").replace("\\&", "")
    return re.sub(r"\\f[BIRP]", "", text)


def subparsers(parser: argparse.ArgumentParser) -> dict:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    raise AssertionError("build_parser() has no subcommands")


def option_strings() -> set:
    parser = cli.build_parser()
    options = {o for a in parser._actions for o in a.option_strings}
    for sub in subparsers(parser).values():
        options.update(o for a in sub._actions for o in a.option_strings)
    return options


def spec_keys() -> list:
    return [(s.section, s.key) for s in SETTINGS]


def test_subcommands_match_the_documented_list():
    assert set(subparsers(cli.build_parser())) == set(cli.COMMANDS)


@pytest.mark.parametrize("command", cli.COMMANDS)
def test_every_subcommand_is_in_the_man_page(command):
    text = roff_text(MAN8)
    assert re.search(rf"^\.(B|BI|BR) {re.escape(command)}\b", text, re.M), \
        f"subcommand {command!r} has no entry in {MAN8.name} (expected a '.B {command}' tag under COMMANDS)"


@pytest.mark.parametrize("option", sorted(option_strings()))
def test_every_option_is_in_the_man_page(option):
    text = roff_text(MAN8)
    assert re.search(rf"(?<![\w-]){re.escape(option)}(?![\w-])", text), \
        f"option {option} (from --help) is missing from {MAN8.name}"


def _man_entry(section: str, key: str) -> str:
    text = roff_text(MAN5)
    heading = f'.SH "SECTION [{section}]"'
    assert heading in text, f"{MAN5.name} has no section {heading}"
    body = text.split(heading, 1)[1].split("\n.SH ", 1)[0]
    match = re.search(rf"^\.BR? {re.escape(key)}\b(.*)$", body, re.M)
    assert match, f"[{section}] {key} is not described in {MAN5.name}"
    return match.group(1)


def _number(value: float) -> str:
    return str(int(value)) if value == int(value) else str(value)


def _man_type(setting) -> str:
    """How man 5 states a key's type, range and default: (integer, 1 to 256, default 16)."""
    if setting.choices:
        kind = ", ".join(setting.choices[:-1]) + " or " + setting.choices[-1] + ";"
    elif setting.low is not None:
        kind = f"{setting.kind.name}, {_number(setting.low)} to {_number(setting.high)},"
    else:
        kind = f"{setting.kind.name},"
    if setting.default is None:
        return f"{kind} default unset"
    if setting.default == "":
        return f"{kind} default empty"
    return f"{kind} default {setting.default}"


@pytest.mark.parametrize("section,key", spec_keys())
def test_every_config_key_is_in_the_conf_man_page_with_its_type_range_and_default(section, key):
    entry = " ".join(re.sub(r'["()]', " ", _man_entry(section, key)).split())
    expected = _man_type(BY_NAME[(section, key)])
    assert entry == expected or entry.startswith(expected + ":"), \
        f"man 5 [{section}] {key}: {entry!r}, the settings table says {expected!r}"


def test_the_shipped_conffile_is_what_the_settings_table_renders():
    assert CONFFILE.read_text(encoding="utf-8") == conffile(), \
        "etc/backup.conf differs from the settings table: python3 -m ethoscope_rsync.config.settings > etc/backup.conf"


def test_every_config_section_is_in_the_shipped_conffile():
    headers = re.findall(r"^\[(\w+)\]\s*$", CONFFILE.read_text(encoding="utf-8"), re.M)
    assert headers == list(SECTIONS)


def test_the_shipped_conffile_sets_nothing():
    for number, line in enumerate(CONFFILE.read_text(encoding="utf-8").splitlines(), 1):
        stripped = line.strip()
        assert not stripped or stripped.startswith("#") or re.fullmatch(r"\[\w+\]", stripped), \
            f"{CONFFILE}:{number} is neither a comment nor a section header: {line!r}"


def test_the_shipped_conffile_loads():
    load_config(CONFFILE)


def _uncommented() -> list:
    """The conffile with every commented-out 'key = value' line switched on."""
    return [re.sub(r"^#(?=[A-Za-z_]\w* = )", "", line)
            for line in CONFFILE.read_text(encoding="utf-8").splitlines()]


def test_the_conffile_comments_show_the_real_defaults(tmp_path):
    lines = [line for line in _uncommented() if not line.startswith("ETHOSCOPE_")]
    switched_on = tmp_path / "backup.conf"
    switched_on.write_text("\n".join(lines) + "\n", encoding="utf-8")
    ignore = {"source"}
    unset = {"results", "videos"}      # unset by default (the upstream ethoscope.conf first)
    shipped, explicit = load_config(CONFFILE), load_config(switched_on)
    for name in ignore | {"devices", "paths"}:
        assert name in {f.name for f in dataclasses.fields(shipped)}
    assert dataclasses.replace(shipped, source="", paths=None) == dataclasses.replace(explicit, source="", paths=None)
    keep = {f.name for f in dataclasses.fields(shipped.paths)} - unset
    assert all(getattr(shipped.paths, k) == getattr(explicit.paths, k) for k in keep)


def test_the_conffile_example_device_is_valid(tmp_path):
    lines = [re.sub(r"^#(?=ETHOSCOPE_)", "", line) for line in CONFFILE.read_text(encoding="utf-8").splitlines()]
    path = tmp_path / "backup.conf"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    assert load_config(path).devices, "the [devices] example in the conffile does not load"


@pytest.mark.parametrize("page", MAN_PAGES, ids=lambda p: p.name)
def test_man_pages_have_no_groff_warnings(page):
    groff = shutil.which("groff") or ("/usr/bin/groff" if Path("/usr/bin/groff").exists() else None)
    if groff is None:
        pytest.fail("groff is not installed; the man pages cannot be checked: apt-get install groff-base")
    result = subprocess.run([groff, "-man", "-ww", "-z", str(page)], capture_output=True, text=True,
                            env={"LC_ALL": "C.UTF-8", "PATH": "/usr/bin:/bin"}, timeout=60)
    assert result.returncode == 0 and not result.stderr.strip(), \
        f"groff warnings for {page.name}:\n{result.stderr}"


@pytest.mark.parametrize("page", MAN_PAGES, ids=lambda p: p.name)
def test_man_pages_name_the_package_files(page):
    text = roff_text(page)
    assert "/etc/ethoscope/backup.conf" in text


def test_man_page_jobs_default_is_the_table_default():
    default = BY_NAME[("transfer", "jobs")].default
    entry = roff_text(MAN8).split("--jobs", 1)[1].split("\n.TP", 1)[0]
    assert re.search(rf'"\[transfer\] jobs"\s*,\s*{default}\)', entry), entry


def _shipped_name(source: Path, name: str) -> str:
    """dh_compress ships documentation over 4 kB compressed: README.md as README.md.gz."""
    return name + ".gz" if source.stat().st_size > 4096 else name


def test_docs_named_anywhere_are_the_shipped_ones():
    """Man pages, units, maintainer scripts and README name /usr/share/doc files as they ship."""
    shipped = {_shipped_name(ROOT / "README.md", "README.md"),
               _shipped_name(ROOT / "debian" / "ethoscope-rsync.README.Debian", "README.Debian"), "copyright"}
    sources = [*MAN_PAGES, ROOT / "README.md", *(p for p in (ROOT / "systemd").rglob("*") if p.is_file()),
               *(ROOT / "debian").glob("ethoscope-rsync.*")]
    for source in sources:
        text = roff_text(source) if source in MAN_PAGES else source.read_text(encoding="utf-8")
        for name in re.findall(r"/usr/share/doc/ethoscope-rsync/([\w.]*\w)", text):
            assert name in shipped, f"{source.name} names /usr/share/doc/ethoscope-rsync/{name}; shipped: {shipped}"
