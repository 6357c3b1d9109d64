"""Commands started by root act as the user that owns the state directory (the service's user).

On a packaged node the timer's passes and the status service run as ``ethoscope-backup``. A
command an operator starts by hand as root (``run``, ``run --dry-run``, ``check``, ``forget-host``,
``daemon``, ``serve``, ``alert``, ``verify``) would otherwise leave root-owned files (lock, history, known_hosts, copies)
that the service can no longer change, or rewrite the service's files as root in a folder that
user can write. So root hands the command over: when it needs the SSH key, the root-only key is
copied into a private credentials directory owned by that user (what ``LoadCredential=`` does under
systemd); then the process drops to that user and group for good, before touching anything else.
"""
from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import tempfile
from pathlib import Path

from ethoscope_rsync.config.load import credential_key
from ethoscope_rsync.config.record import Config

# What a command needs from root besides the user switch: the SSH key or not.
KEY_REQUIRED, KEY_OPTIONAL, NO_KEY = "required", "optional", "none"


class IdentityError(Exception):
    """The hand-over to the service user is impossible (e.g. the key cannot be read)."""


def service_owner(config: Config) -> int | None:
    """uid to become: the state directory's owner when we are root and it is not; else None."""
    if os.geteuid() != 0:
        return None
    try:
        owner = config.paths.state_dir.stat().st_uid
    except OSError:
        return None
    return owner if owner != 0 else None


def _copy_key(config: Config, account: pwd.struct_passwd) -> Path:
    """A private credentials directory for `account` holding a copy of the SSH key (as ssh-key)."""
    key = credential_key(config)
    credentials = Path(tempfile.mkdtemp(prefix="ethoscope-backup-credentials-"))
    try:
        target = credentials / "ssh-key"
        with open(key, "rb") as source, open(os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL,
                                                      0o600), "wb") as copy:
            shutil.copyfileobj(source, copy)
        os.chown(target, account.pw_uid, account.pw_gid)
        os.chown(credentials, account.pw_uid, account.pw_gid)
    except OSError as error:
        shutil.rmtree(credentials, ignore_errors=True)
        raise IdentityError(f"cannot hand the SSH key {key} to {account.pw_name}: {error.strerror}") from None
    return credentials


def become(config: Config, uid: int, key: str = KEY_REQUIRED) -> Path | None:
    """Drop to `uid` (and its primary group) for good. With `key` required (or optional and
    readable), first copy the SSH key for it and point CREDENTIALS_DIRECTORY at the copy.
    Returns the credentials directory, or None (the caller removes it)."""
    try:
        account = pwd.getpwuid(uid)
    except KeyError:
        raise IdentityError(f"{config.paths.state_dir} belongs to uid {uid}, which has no account") from None
    credentials = None
    if key != NO_KEY:
        try:
            credentials = _copy_key(config, account)
        except IdentityError:
            if key == KEY_REQUIRED:
                raise
    os.setgroups([])
    os.setgid(account.pw_gid)
    os.setuid(uid)
    if credentials is not None:
        os.environ["CREDENTIALS_DIRECTORY"] = str(credentials)
    os.environ["HOME"] = account.pw_dir
    return credentials


@contextlib.contextmanager
def as_service_user(config: Config, key: str = KEY_REQUIRED):
    """Run the body as the service user when root started us on a packaged node; else unchanged.
    Yields the credentials directory or None; removes it afterwards."""
    owner = service_owner(config)
    credentials = become(config, owner, key) if owner is not None else None
    try:
        yield credentials
    finally:
        if credentials is not None:
            shutil.rmtree(credentials, ignore_errors=True)
