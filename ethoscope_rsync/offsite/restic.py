"""Pure builders of restic's argv and environment. Nothing here runs a process.

Every command reaches the repository the same way (:class:`Access`): the repository and the
password file are given in the child's environment only (``RESTIC_REPOSITORY``,
``RESTIC_PASSWORD_FILE``), never on its command line (``ps`` shows that to everyone) nor in ours;
a password or repository the operator's shell may hold is blanked. An SFTP repository is reached
with an ssh command of ours (``-o sftp.command=``): the node's key, a known_hosts of its own (trust
on first use), no prompts, bounded connect and keep-alive, as the devices are.
"""
from __future__ import annotations

import dataclasses
import re
from pathlib import Path

from ethoscope_rsync.config.syntax import Repository

RESTIC = "restic"
TAG = "ethoscope-backup"          # every snapshot of ours; retention touches only these (and this host's)
# A word of the sftp command: restic splits it on spaces, and its -o option is read as CSV (no
# quotes or commas); nothing of ours needs other characters.
_WORD_RE = re.compile(r"[A-Za-z0-9_./@:%+=\[\]-]+")
# Hidden files and folders, at any depth below a destination, are never sent: the raw database mirror
# and --safe's old versions (.ethoscope-backup/), rsync's interrupted files (.ethoscope-backup-partial/),
# the files rsync and a database recovery write before renaming them into place (.NAME.XXXXXX,
# .NAME.recover-*). Each pattern is anchored below its destination (DEST/**/PATTERN): a bare ".*"
# would also match a hidden folder above it and leave the snapshot empty.
HIDDEN = ".*"
# A database's journal files: the node's copies are self-contained (a -wal beside one is a reader's).
JOURNALS = ("*.db-wal", "*.db-shm", "*.db-journal")
EXCLUDED = (HIDDEN,) + JOURNALS


class UnsafeWord(ValueError):
    """A path or name that cannot be written into restic's sftp command."""


@dataclasses.dataclass(frozen=True)
class Access:
    """What every restic command needs to reach the repository."""
    repository: Repository
    password_file: Path
    cache_dir: Path
    sftp: tuple = ()                 # the ssh command restic runs for an sftp repository
    environment: tuple = ()          # (NAME, VALUE) of [offsite] environment_file


@dataclasses.dataclass(frozen=True)
class Retention:
    daily: int
    weekly: int
    monthly: int


def environment(access: Access) -> dict:
    """The child's added environment: the repository, the password file, the backend's variables."""
    env = {"RESTIC_PASSWORD": "", "RESTIC_PASSWORD_COMMAND": "", "RESTIC_REPOSITORY_FILE": "",
           "RESTIC_PROGRESS_FPS": "0.2"}           # --json progress every 5 s, not 60 a second
    env.update(dict(access.environment))
    env.update(RESTIC_REPOSITORY=access.repository.text, RESTIC_PASSWORD_FILE=str(access.password_file))
    return env


def _ssh_options(key: Path, known_hosts: Path, connect_timeout: int) -> tuple:
    return ("-i", str(key), "-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes",
            "-o", "StrictHostKeyChecking=accept-new",      # trust on first use, refuse a changed key
            "-o", f"UserKnownHostsFile={known_hosts}", "-o", "GlobalKnownHostsFile=/dev/null",
            "-o", "UpdateHostKeys=no", "-o", f"ConnectTimeout={connect_timeout}",
            "-o", "ServerAliveInterval=5", "-o", "ServerAliveCountMax=3",   # a cut link is noticed in 15 s
            "-o", "LogLevel=ERROR")


def sftp_command(repository: Repository, key: Path, known_hosts: Path, connect_timeout: int) -> tuple:
    """The ssh command restic runs for an sftp repository (words: restic splits it on spaces)."""
    words = ("ssh",) + _ssh_options(key, known_hosts, connect_timeout) + (
        ("-p", str(repository.port)) if repository.port else ()) + (
        ("-l", repository.user) if repository.user else ()) + (repository.host, "-s", "sftp")
    for word in words:
        if not _WORD_RE.fullmatch(word):
            raise UnsafeWord(f"cannot give restic the ssh command: {word!r} holds a space, a quote or a comma")
    return words


def sftp_df_argv(repository: Repository, key: Path, known_hosts: Path, connect_timeout: int) -> tuple:
    """sftp in batch mode (commands on stdin: :func:`sftp_df_input`), to ask the NAS for free space."""
    return ("sftp", "-b", "-") + _ssh_options(key, known_hosts, connect_timeout) + (
        ("-P", str(repository.port)) if repository.port else ()) + (
        ("-o", f"User={repository.user}") if repository.user else ()) + ("--", repository.host)


def sftp_df_input(path: str) -> bytes:
    """``df PATH``, quoted for sftp's batch parser."""
    return ('df "%s"\n' % path.replace("\\", "\\\\").replace('"', '\\"')).encode()


def _common(access: Access) -> tuple:
    argv: tuple = (RESTIC, "--cache-dir", str(access.cache_dir))
    if access.sftp:
        argv += ("-o", "sftp.command=" + " ".join(access.sftp))
    return argv


def init_argv(access: Access) -> tuple:
    return _common(access) + ("init",)


def config_argv(access: Access) -> tuple:
    """``restic cat config``: the repository is there and the password opens it; reads one small file."""
    return _common(access) + ("cat", "config")


def unlock_argv(access: Access) -> tuple:
    """Removes only stale locks (of a killed run): never one of a restic still running."""
    return _common(access) + ("unlock",)


def backup_argv(access: Access, sources: tuple, exclude_file: Path | None, *, host: str,
                limit_upload: int = 0, dry_run: bool = False) -> tuple:
    """One snapshot of `sources` (absolute folders), tagged as ours, without EXCLUDED, nor the
    paths listed in `exclude_file` (databases held back); `limit_upload` KiB/s, 0 none."""
    argv = _common(access) + ("backup", "--json", "--host", host, "--tag", TAG)
    argv += tuple(f"--exclude={glob_escape(str(source).rstrip('/'))}/**/{pattern}" for source in sources
                  for pattern in EXCLUDED)
    if exclude_file is not None:
        argv += ("--exclude-file", str(exclude_file))
    if limit_upload:
        argv += ("--limit-upload", str(limit_upload))
    if dry_run:
        argv += ("--dry-run",)
    return argv + ("--",) + tuple(str(source) for source in sources)


def forget_argv(access: Access, keep: Retention, *, host: str) -> tuple:
    """Retention of our snapshots of this host (a shared repository's others are never touched)."""
    return _common(access) + ("forget", "--json", "--host", host, "--tag", TAG, "--group-by", "host,tags",
                              "--keep-daily", str(keep.daily), "--keep-weekly", str(keep.weekly),
                              "--keep-monthly", str(keep.monthly))


def prune_argv(access: Access) -> tuple:
    """Remove the data no snapshot uses any more (after forget)."""
    return _common(access) + ("prune",)


def snapshots_argv(access: Access, *, host: str) -> tuple:
    """Our newest snapshot of this host, as JSON."""
    return _common(access) + ("snapshots", "--json", "--latest", "1", "--host", host, "--tag", TAG)


def stats_argv(access: Access) -> tuple:
    """What the repository stores (after deduplication and compression), as JSON."""
    return _common(access) + ("stats", "--json", "--mode", "raw-data")


def check_argv(access: Access, group: int, groups: int) -> tuple:
    """The repository's structure, and with `groups` the data of one group of every `groups`."""
    return _common(access) + ("check",) + ((f"--read-data-subset={group}/{groups}",) if groups else ())


def restore_argv(access: Access, snapshot: str, target: Path, include: tuple = ()) -> tuple:
    """Files of a snapshot into `target` (the restore guide's command)."""
    return _common(access) + ("restore", snapshot, "--target", str(target)) + tuple(
        f"--include={path}" for path in include)


def glob_escape(path: str) -> str:
    """`path` as a restic pattern matching only itself (its glob characters escaped)."""
    return re.sub(r"([*?\[\]\\])", r"\\\1", path)


def exclude_line(path: str) -> bytes:
    """An exclude-file line matching exactly the absolute `path` (a name from a device: hostile).

    restic reads the file line by line, trims spaces, expands ``$NAME`` and matches glob patterns:
    glob characters are escaped, ``$`` doubled; a character the file cannot hold (a line break, a
    space at either end) becomes ``?``, which matches it (and any other at that place: excluding a
    little more, never sending a database held back)."""
    out = []
    for index, char in enumerate(path):
        if char in "*?[]\\":
            out.append(glob_escape(char))
        elif char == "$":
            out.append("$$")
        elif char in "\r\n" or (char.isspace() and index in (0, len(path) - 1)):
            out.append("?")
        else:
            out.append(char)
    return "".join(out).encode("utf-8", "surrogateescape") + b"\n"
