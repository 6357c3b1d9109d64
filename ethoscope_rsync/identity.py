"""Run a pass started by root as the user that owns the state directory (the service's user).

On a packaged node the timer's passes run as ``ethoscope-backup``. A pass an operator starts by
hand as root would otherwise leave root-owned files (lock, history, known_hosts, copies) that the
service can no longer change. So root hands the pass over: the root-only key is copied into a
private credentials directory owned by that user (what ``LoadCredential=`` does under systemd),
then the process drops to that user and group for good.
"""
from __future__ import annotations

import os
import pwd
import shutil
import tempfile
from pathlib import Path

from ethoscope_rsync.config import Config, credential_key


class IdentityError(Exception):
    """The hand-over to the service user is impossible (e.g. the key cannot be read)."""


def service_owner(config: Config) -> int | None:
    """uid to become: the state directory's owner when we are root and it is not; else None."""
    if os.geteuid() != 0:
        return None
    try:
        owner = config.state_dir.stat().st_uid
    except OSError:
        return None
    return owner if owner != 0 else None


def become(config: Config, uid: int) -> Path:
    """Copy the key for `uid`, drop to `uid` (and its primary group), point
    CREDENTIALS_DIRECTORY at the copy. Returns the credentials directory (the caller removes it)."""
    try:
        account = pwd.getpwuid(uid)
    except KeyError:
        raise IdentityError(f"{config.state_dir} belongs to uid {uid}, which has no account") from None
    key = credential_key(config)
    credentials = Path(tempfile.mkdtemp(prefix="ethoscope-backup-credentials-"))
    try:
        target = credentials / "ssh-key"
        with open(key, "rb") as source, open(os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL,
                                                      0o600), "wb") as copy:
            shutil.copyfileobj(source, copy)
        os.chown(target, uid, account.pw_gid)
        os.chown(credentials, uid, account.pw_gid)
    except OSError as error:
        shutil.rmtree(credentials, ignore_errors=True)
        raise IdentityError(f"cannot hand the SSH key {key} to {account.pw_name}: {error.strerror}") from None
    os.setgroups([])
    os.setgid(account.pw_gid)
    os.setuid(uid)
    os.environ["CREDENTIALS_DIRECTORY"] = str(credentials)
    os.environ["HOME"] = account.pw_dir
    return credentials
