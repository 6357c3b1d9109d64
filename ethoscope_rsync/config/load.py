"""Load and validate /etc/ethoscope/backup.conf once, into one immutable Config.

The file is configobj INI checked against ``backup.configspec`` (shipped in this package).
Unset destinations fall back to the upstream node's JSON ``/etc/ethoscope/ethoscope.conf``
(``folders.results.path`` / ``folders.video.path``), then to ``/ethoscope_data/...``.
Command-line options are applied afterwards with :func:`dataclasses.replace`.
"""
from __future__ import annotations

import dataclasses
import json
import os
import re
import urllib.parse
from pathlib import Path

import configobj
import validate

DEFAULT_CONFIG = Path("/etc/ethoscope/backup.conf")
SPEC_PATH = Path(__file__).with_name("backup.configspec")
DEFAULT_RESULTS = Path("/ethoscope_data/results")
UPSTREAM_NAME = "ethoscope.conf"      # what the upstream tool's -c DIR holds

_SIZE_UNITS = {"": 1, "B": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}


class ConfigError(Exception):
    """A configuration problem, worded for the operator (file, line, key)."""


@dataclasses.dataclass(frozen=True)
class Config:
    """Everything a pass or the status service needs, validated; never mutated."""

    source: str
    server: str
    discovery_timeout: float
    mdns_timeout: float
    results_dir: Path
    videos_dir: Path
    status_file: Path
    state_dir: Path
    remote_results: str
    remote_videos: str
    ssh_user: str
    ssh_key: Path
    known_hosts: Path
    ssh_port: int
    host_key_policy: str
    connect_timeout: int
    remote_python: str
    ssh_ciphers: str
    ssh_kex: str
    what: str
    jobs: int
    bwlimit_kib: int
    compress_results: bool
    io_timeout: int
    device_timeout: int
    retries: int
    retry_delay: float
    min_free_bytes: int
    safe: bool
    keep_replaced_days: float
    live_databases: bool
    listen: str
    cors_origin: str
    idle_exit: float
    stale_after: float
    update_interval: float
    daemon_interval: float
    database_check_timeout: float = 300.0   # [transfer]: seconds the node may spend on one device database
    retire_after: float = 2592000.0         # [status]: seconds unseen after which a device is no longer shown
    static_devices: tuple = ()
    selection: tuple = ()
    dry_run: bool = False
    debug: bool = False
    mail_to: tuple = ()                # [alert]: addresses mailed through sendmail
    webhook: str = ""                  # [alert]: http(s) URL a JSON alert is POSTed to
    alert_failures: int = 1            # [alert] failures: consecutive failed passes before an alert
    alert_timeout: float = 10.0        # [alert] timeout: seconds for each channel
    disk_horizon: float = 14.0         # [alert] disk_horizon: days; warn when full sooner (0: never)

    @property
    def history_file(self) -> Path:
        return self.state_dir / "history.json"

    @property
    def lock_file(self) -> Path:
        return self.state_dir / "lock"

    @property
    def alerts_file(self) -> Path:
        return self.state_dir / "alerts.json"

    @property
    def verify_file(self) -> Path:
        return self.state_dir / "verify.json"

    def kinds(self) -> tuple:
        """The trees this pass copies, in order: results before videos (none: switched off, see switches)."""
        return {"unified": ("results", "videos"), "results": ("results",),
                "videos": ("videos",), "": ()}[self.what]

    def destination(self, kind: str) -> Path:
        return self.results_dir if kind == "results" else self.videos_dir

    def remote_root(self, kind: str) -> str:
        return self.remote_results if kind == "results" else self.remote_videos


def parse_size(text: str) -> int:
    """'1G', '500M', '0', '2048' (bytes) -> bytes. Raises ValueError."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([BKMGT]?)(?:i?B)?\s*", text.upper())
    if not match:
        raise ValueError(f"not a size: {text!r} (use e.g. 500M, 2G)")
    return int(float(match.group(1)) * _SIZE_UNITS[match.group(2)])


def parse_ciphers(text: str) -> str:
    """An ssh cipher list ('aes128-gcm@openssh.com,chacha20-poly1305@openssh.com') or ''."""
    text = text.strip()
    if text and not re.fullmatch(r"[A-Za-z0-9@.+-]+(,[A-Za-z0-9@.+-]+)*", text):
        raise ValueError(f"not an ssh cipher list: {text!r}")
    return text


def parse_kex(text: str) -> str:
    """An ssh KexAlgorithms value ('^curve25519-sha256', 'a,b', '-sntrup761x25519-sha512') or ''."""
    text = text.strip()
    if text and not re.fullmatch(r"[+^-]?[A-Za-z0-9@.+-]+(,[A-Za-z0-9@.+-]+)*", text):
        raise ValueError(f"not an ssh key exchange list: {text!r}")
    return text


def parse_rate(text: str) -> int:
    """rsync-style rate '10M', '800K', '1500' (KiB/s when unitless) -> KiB/s; '' -> 0 (no limit)."""
    if not text.strip():
        return 0
    if re.fullmatch(r"\s*\d+\s*", text):
        return int(text)
    return max(1, parse_size(text) // 1024)


# user@host: no spaces, quotes, brackets or commas; never starting with "-" (sendmail's argv)
_ADDRESS_RE = re.compile(r"[A-Za-z0-9_+=.][A-Za-z0-9_+=.-]*@[A-Za-z0-9][A-Za-z0-9.-]*")


def parse_addresses(text: str) -> tuple:
    """'a@lab.org, b@lab.org' -> ('a@lab.org', 'b@lab.org'); '' -> (). Raises ValueError."""
    addresses = tuple(a.strip() for a in text.split(",") if a.strip())
    for address in addresses:
        if len(address) > 254 or not _ADDRESS_RE.fullmatch(address):
            raise ValueError(f"not a mail address: {address!r} (use user@host, comma-separated)")
    return addresses


def parse_webhook(text: str) -> str:
    """An http:// or https:// URL with a host, or '' (no webhook). Raises ValueError."""
    text = text.strip()
    if not text:
        return ""
    parsed = urllib.parse.urlsplit(text)
    if (parsed.scheme not in ("http", "https") or not parsed.hostname or len(text) > 2000
            or any(c.isspace() or ord(c) < 32 or ord(c) == 127 for c in text)):
        raise ValueError(f"not an http:// or https:// URL: {text[:80]!r}")
    return text


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
    spec = configobj.ConfigObj(str(SPEC_PATH), list_values=False, _inspec=True,
                               encoding="utf-8")
    if not path.exists():
        if explicit:
            raise ConfigError(f"{path}: no such configuration file")
        return configobj.ConfigObj(configspec=spec)
    try:
        return configobj.ConfigObj(str(path), configspec=spec, file_error=True,
                                   encoding="utf-8", raise_errors=True)
    except configobj.ParseError as error:
        line = getattr(error, "line_number", None)
        raise ConfigError(f"{path}:{line}: cannot parse: {error.msg if hasattr(error, 'msg') else error}") from None
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError(f"{path}: cannot read: {error}") from None


def _validate(conf: configobj.ConfigObj, path: Path) -> None:
    result = conf.validate(validate.Validator(), preserve_errors=True, copy=True)
    if result is not True:
        for sections, key, error in configobj.flatten_errors(conf, result):
            section = sections[0] if sections else ""
            if key is None:
                raise ConfigError(f"{path}: missing section [{section}]")
            message = str(error) if error else "missing value"
            raise ConfigError(f"{_where(path, section, key)}: [{section}] {key}: {message}")
    for sections, name in configobj.get_extra_values(conf):
        if sections:
            raise ConfigError(f"{_where(path, sections[0], name)}: unknown key "
                              f"[{sections[0]}] {name}")
        raise ConfigError(f"{path}: unknown section or key {name!r}")


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


def _absolute(path: Path, section: str, key: str, value: str) -> Path:
    candidate = Path(value)
    if not candidate.is_absolute():
        raise ConfigError(f"{_where(path, section, key)}: [{section}] {key}: must be an absolute path, not {value!r}")
    return candidate


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
    _validate(conf, path)
    node, paths, ssh, transfer, status, alert = (conf[s] for s in ("node", "paths", "ssh", "transfer", "status",
                                                                   "alert"))

    upstream = (_upstream_folders(upstream_path, explicit=True) if upstream_path
                else _upstream_folders(Path(paths["upstream_config"])))
    results_value = paths["results"] or upstream.get("results")
    results = _absolute(path, "paths", "results", results_value) if results_value else DEFAULT_RESULTS
    videos_value = paths["videos"] or upstream.get("videos")
    videos = (_absolute(path, "paths", "videos", videos_value) if videos_value
              else derive_videos_dir(results))

    def checked(section, key, parser):
        try:
            return parser(conf[section][key])
        except ValueError as error:
            raise ConfigError(f"{_where(path, section, key)}: [{section}] {key}: {error}") from None

    from ethoscope_rsync.config.devices import DeviceError, static_device  # devices imports nothing of ours but this

    statics = []
    for name, address in conf["devices"].items():
        try:
            statics.append(static_device(name, address))
        except DeviceError as error:
            raise ConfigError(f"{_where(path, 'devices', name)}: [devices] {error}") from None

    return Config(
        source=str(path),
        server=node["server"].strip(),
        discovery_timeout=node["discovery_timeout"],
        mdns_timeout=node["mdns_timeout"],
        results_dir=results,
        videos_dir=videos,
        status_file=_absolute(path, "paths", "status_file", paths["status_file"]),
        state_dir=_absolute(path, "paths", "state_dir", paths["state_dir"]),
        remote_results=paths["remote_results"].rstrip("/") or "/",
        remote_videos=paths["remote_videos"].rstrip("/") or "/",
        ssh_user=ssh["user"],
        ssh_key=_absolute(path, "ssh", "key", ssh["key"]),
        known_hosts=_absolute(path, "ssh", "known_hosts", ssh["known_hosts"]),
        ssh_port=ssh["port"],
        host_key_policy=ssh["host_key_policy"],
        connect_timeout=ssh["connect_timeout"],
        remote_python=ssh["remote_python"],
        ssh_ciphers=checked("ssh", "ciphers", parse_ciphers),
        ssh_kex=checked("ssh", "kex", parse_kex),
        what=transfer["what"],
        jobs=transfer["jobs"],
        bwlimit_kib=checked("transfer", "bwlimit", parse_rate),
        compress_results=transfer["compress_results"],
        io_timeout=transfer["io_timeout"],
        device_timeout=transfer["device_timeout"],
        retries=transfer["retries"],
        retry_delay=transfer["retry_delay"],
        min_free_bytes=checked("transfer", "min_free", parse_size),
        safe=transfer["safe"],
        keep_replaced_days=transfer["keep_replaced_days"],
        live_databases=transfer["live_databases"],
        listen=status["listen"],
        cors_origin=status["cors_origin"],
        idle_exit=status["idle_exit"],
        stale_after=status["stale_after"],
        update_interval=status["update_interval"],
        daemon_interval=conf["daemon"]["interval"],
        database_check_timeout=transfer["database_check_timeout"],
        retire_after=status["retire_after"],
        static_devices=tuple(statics),
        mail_to=checked("alert", "mail_to", parse_addresses),
        webhook=checked("alert", "webhook", parse_webhook),
        alert_failures=alert["failures"],
        alert_timeout=alert["timeout"],
        disk_horizon=alert["disk_horizon"],
    )


def credential_key(config: Config) -> Path:
    """The SSH key to use: systemd's LoadCredential=ssh-key wins over the configured path."""
    directory = os.environ.get("CREDENTIALS_DIRECTORY")
    if directory and (Path(directory) / "ssh-key").is_file():
        return Path(directory) / "ssh-key"
    return config.ssh_key
