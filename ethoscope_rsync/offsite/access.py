"""How this node reaches its second copy: the repository, the password, the backend's variables,
the ssh command of an sftp repository; and where restic keeps its cache.

The password and the backend's variables are files only root can read. Under systemd the
service gets copies as credentials (``LoadCredential=restic-password:...``, and
``restic-environment``); a command root starts by hand hands them over the same way
(system/privileges.py). The status service never gets either: it has no credential, and
``offsite.json`` holds neither.
"""
from __future__ import annotations

import re
import socket
from pathlib import Path

from ethoscope_rsync.config.load import RESTIC_ENVIRONMENT, RESTIC_PASSWORD, credential, credential_key
from ethoscope_rsync.config.record import Config
from ethoscope_rsync.offsite.restic import Access, UnsafeWord, sftp_command

MAX_ENVIRONMENT = 64 << 10            # bytes of environment_file read
_NAME_RE = re.compile(r"[A-Z_][A-Z0-9_]{0,63}")
# Variables a backend file must not set: ours (the repository, the password), and the ones that
# change which programs and libraries run.
_REFUSED = re.compile(r"RESTIC_(REPOSITORY|PASSWORD|CACHE_DIR).*|PATH|HOME|SHELL|LD_.*|PYTHON.*|GODEBUG|TMPDIR")


class Unusable(Exception):
    """The repository cannot be reached for a reason of this node's (one line, for people)."""

    def __init__(self, problem: str, message: str):
        super().__init__(message)
        self.problem, self.message = problem, message


def known_hosts(config: Config) -> Path:
    """The host key of an sftp repository, recorded at first contact (never the devices' file)."""
    return config.paths.state_dir / "offsite_known_hosts"


def cache_dir(config: Config) -> Path:
    """restic's cache of the repository's index and trees (makes an unchanged second copy cheap)."""
    return config.paths.state_dir / "restic-cache"


def host_name() -> str:
    """The name the snapshots carry (restic --host): retention and the restore guide select by it."""
    return socket.gethostname() or "ethoscope-node"


def password_file(config: Config) -> Path:
    path = credential(RESTIC_PASSWORD, config.offsite.password_file)
    try:
        with open(path, "rb") as handle:
            if not handle.read(4096).strip():
                raise Unusable("no password", f"password file {path} is empty")
    except OSError as error:
        raise Unusable("no password", f"password file {path}: {error.strerror}; as root, "
                                      "ethoscope-backup offsite --init creates one with the repository") from None
    return path


def parse_environment(text: str, source: str) -> tuple:
    """NAME=VALUE lines ('#' comments, blank lines, an optional 'export ') -> ((NAME, VALUE), ...)."""
    found = []
    for number, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        name, equals, value = line.removeprefix("export ").partition("=")
        name, value = name.strip(), value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        if not equals or not _NAME_RE.fullmatch(name):
            raise Unusable("bad environment file", f"{source}:{number}: not NAME=VALUE")
        if _REFUSED.fullmatch(name):
            raise Unusable("bad environment file", f"{source}:{number}: {name} cannot be set there")
        if "\0" in value:
            raise Unusable("bad environment file", f"{source}:{number}: a NUL character in {name}")
        found.append((name, value))
    return tuple(found)


def environment(config: Config) -> tuple:
    configured = config.offsite.environment_file
    if configured is None:
        return ()
    path = credential(RESTIC_ENVIRONMENT, configured)
    try:
        with open(path, "rb") as handle:
            data = handle.read(MAX_ENVIRONMENT + 1)
    except OSError as error:
        raise Unusable("bad environment file", f"environment file {path}: {error.strerror}") from None
    if len(data) > MAX_ENVIRONMENT:
        raise Unusable("bad environment file", f"environment file {path}: more than {MAX_ENVIRONMENT} bytes")
    return parse_environment(data.decode("utf-8", "replace"), str(path))


def make_access(config: Config) -> Access:
    """Everything restic needs to reach the repository; Unusable when this node lacks a part of it."""
    repository = config.offsite.repository
    if repository is None:
        raise Unusable("not configured", "no [offsite] repository is set")
    sftp: tuple = ()
    if repository.backend == "sftp":
        try:
            sftp = sftp_command(repository, credential_key(config), known_hosts(config), config.ssh.connect_timeout)
        except UnsafeWord as error:
            raise Unusable("bad configuration", str(error)) from None
    return Access(repository, password_file(config), cache_dir(config), sftp, environment(config))
