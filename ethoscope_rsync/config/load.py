"""Load and validate /etc/ethoscope/backup.conf once, into one immutable :class:`Config`.

The file is configobj INI; every key is checked against the settings table (settings.py): its type,
range and choices, with one message naming the file, the line and the key, and a hint where a person
needs one (a misspelt key, a list without quotes). Unset destinations fall back to the upstream
node's JSON ``/etc/ethoscope/ethoscope.conf`` (``folders.results.path`` / ``folders.video.path``),
then to ``/ethoscope_data/...``. Command-line options are applied afterwards (:meth:`Config.changed`).
"""
from __future__ import annotations

import difflib
import json
import os
import re
from pathlib import Path
from typing import Any, overload

import configobj

from ethoscope_rsync.config.devices import DeviceError, static_device
from ethoscope_rsync.config.record import SECTION_RECORDS, Config
from ethoscope_rsync.config.settings import BY_NAME, SECTIONS, SETTINGS, Setting

DEFAULT_CONFIG = Path("/etc/ethoscope/backup.conf")
DEFAULT_RESULTS = Path("/ethoscope_data/results")
UPSTREAM_NAME = "ethoscope.conf"      # what the upstream tool's -c DIR holds


class ConfigError(Exception):
    """A configuration problem, worded for the operator (file, line, key)."""


def _line_of(path: Path, section: str, key: str) -> int | None:
    """Best-effort line number of `key` inside `[section]` (configobj does not keep them)."""
    current = None
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError:
        return None
    for number, line in enumerate(lines, 1):
        stripped = line.strip()
        if stripped.startswith("["):
            current = stripped.strip("[] ")
        elif current == section and re.match(rf"{re.escape(key)}\s*=", stripped):
            return number
    return None


def _where(path: Path, section: str, key: str) -> str:
    line = _line_of(path, section, key)
    return f"{path}:{line}" if line else str(path)


def _read_file(path: Path, explicit: bool) -> configobj.ConfigObj:
    if not path.exists():
        if explicit:
            raise ConfigError(f"{path}: no such configuration file")
        return configobj.ConfigObj()
    try:
        return configobj.ConfigObj(str(path), file_error=True, encoding="utf-8", raise_errors=True)
    except configobj.ParseError as error:
        line = getattr(error, "line_number", None)
        raise ConfigError(f"{path}:{line}: cannot parse: {getattr(error, 'msg', error)}") from None
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError(f"{path}: cannot read: {error}") from None


def _hint(name: str, known) -> str:
    close = difflib.get_close_matches(name, list(known), n=1, cutoff=0.6)
    return f" (did you mean {close[0]}?)" if close else ""


def _check_names(conf: configobj.ConfigObj, path: Path) -> None:
    """Unknown sections and keys are errors, with the closest known name as a hint."""
    for name in conf.scalars:
        raise ConfigError(f"{path}: {name!r} is outside any section (keys go under a [section] header)")
    for section in conf.sections:
        if section not in SECTIONS:
            raise ConfigError(f"{path}: unknown section [{section}]{_hint(section, SECTIONS)}")
        for sub in conf[section].sections:
            raise ConfigError(f"{path}: [{section}] has a subsection [[{sub}]], which this file does not use")
        if section == "devices":
            continue
        keys = [s.key for s in SETTINGS if s.section == section]
        for key in conf[section].scalars:
            if key not in keys:
                raise ConfigError(f"{_where(path, section, key)}: unknown key [{section}] {key}{_hint(key, keys)}")


def _value(conf: configobj.ConfigObj, path: Path, setting: Setting) -> Any:
    raw = conf.get(setting.section, {}).get(setting.key)
    if raw is None:
        return setting.value
    if isinstance(raw, list):
        if not setting.kind.list_ok:
            raise ConfigError(f"{_where(path, setting.section, setting.key)}: {setting.name}: one value expected, "
                              f"not a list (put a value with a comma in quotes)")
        raw = ", ".join(raw)
    try:
        return setting.parse(raw)
    except ValueError as error:
        raise ConfigError(f"{_where(path, setting.section, setting.key)}: {setting.name}: {error}") from None


def _upstream_folders(path: Path, explicit: bool = False) -> dict:
    """folders.results.path / folders.video.path of the upstream node's JSON config.

    A missing or unreadable file gives no folders, unless it was named on the command line
    (``-c DIR``, `explicit`): then it is a configuration error."""
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        if explicit:
            raise ConfigError(f"{path}: no such file (-c DIR names the folder holding "
                              "the upstream node's ethoscope.conf)") from None
        return {}
    except (OSError, ValueError) as error:
        if explicit:
            raise ConfigError(f"{path}: cannot read the upstream node's JSON configuration: {error}") from None
        return {}
    folders = data.get("folders") if isinstance(data, dict) else None
    if not isinstance(folders, dict):
        return {}
    return {kind: folders[key]["path"] for kind, key in (("results", "results"), ("videos", "video"))
            if isinstance(folders.get(key), dict) and isinstance(folders[key].get("path"), str)}


def derive_videos_dir(results_dir: Path) -> Path:
    """Videos live next to results: /data/results -> /data/videos."""
    return results_dir.parent / "videos"


def load_config(path: Path | str | None = None) -> Config:
    """Read, validate and resolve the configuration file (default /etc/ethoscope/backup.conf).

    `path` may also be a directory, as the upstream tool's ``-c DIR``: the folder holding the
    upstream node's ``ethoscope.conf``, whose destinations are then used (unless backup.conf sets
    them); backup.conf itself is then read from its default path."""
    explicit = path is not None
    path = Path(path) if path is not None else DEFAULT_CONFIG
    upstream_path = None
    if path.is_dir():
        upstream_path, path, explicit = path / UPSTREAM_NAME, DEFAULT_CONFIG, False
    conf = _read_file(path, explicit)
    _check_names(conf, path)
    values: dict[str, dict[str, Any]] = {section: {} for section in SECTION_RECORDS}
    for setting in SETTINGS:
        values[setting.section][setting.key] = _value(conf, path, setting)

    paths = values["paths"]
    upstream = (_upstream_folders(upstream_path, explicit=True) if upstream_path
                else _upstream_folders(paths["upstream_config"]))
    for kind in ("results", "videos"):
        if paths[kind] is None and kind in upstream:
            try:
                paths[kind] = BY_NAME[("paths", kind)].parse(upstream[kind])
            except ValueError as error:
                raise ConfigError(f"{upstream_path or paths['upstream_config']}: folders of {kind}: {error}") from None
    paths["results"] = paths["results"] or DEFAULT_RESULTS
    paths["videos"] = paths["videos"] or derive_videos_dir(paths["results"])

    statics = []
    for name, address in conf.get("devices", {}).items():
        try:
            statics.append(static_device(name, ", ".join(address) if isinstance(address, list) else address))
        except DeviceError as error:
            raise ConfigError(f"{_where(path, 'devices', name)}: [devices] {error}") from None

    return Config(source=str(path), devices=tuple(statics),
                  **{section: record(**values[section]) for section, record in SECTION_RECORDS.items()})


# Names of the credentials systemd hands the services (LoadCredential=NAME:PATH), and root hands a
# command it starts by hand (system/privileges.py): the same names, the same files.
SSH_KEY, RESTIC_PASSWORD, RESTIC_ENVIRONMENT = "ssh-key", "restic-password", "restic-environment"


BLANK = 64          # bytes: a credential this short holding only white space is a unit's blank default


@overload
def credential(name: str, configured: Path) -> Path: ...
@overload
def credential(name: str, configured: Path | None) -> Path | None: ...


def credential(name: str, configured: Path | None) -> Path | None:
    """The file to read: the credential `name` when one was handed over and is not blank (a blank
    one is a unit's SetCredential= default, for a file that is not there: nothing was handed), else
    the configured path."""
    directory = os.environ.get("CREDENTIALS_DIRECTORY")
    if directory:
        handed = Path(directory) / name
        try:
            if handed.is_file() and (handed.stat().st_size > BLANK or handed.read_bytes().strip()):
                return handed
        except OSError:
            pass
    return configured


def credential_key(config: Config) -> Path:
    """The SSH key to use: systemd's LoadCredential=ssh-key wins over the configured path."""
    return credential(SSH_KEY, config.ssh.key)


def credential_files(config: Config) -> tuple:
    """(name, configured path) of every credential the second copy needs besides the SSH key."""
    wanted: tuple = ((RESTIC_PASSWORD, config.offsite.password_file),)
    if config.offsite.environment_file is not None:
        wanted += ((RESTIC_ENVIRONMENT, config.offsite.environment_file),)
    return wanted
