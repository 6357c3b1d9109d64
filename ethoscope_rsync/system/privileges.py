"""Commands started by root act as the user that owns the state directory (the service's user).

On a packaged node the timer's passes and the status service run as ``ethoscope-backup``. A
command an operator starts by hand as root (``run``, ``run --dry-run``, ``check``, ``forget-host``,
``daemon``, ``serve``, ``alert``, ``verify``) would otherwise leave root-owned files (lock, history,
known_hosts, copies) that the service can no longer change, or rewrite the service's files as root
in a folder that user can write. So root hands the command over: when it needs the SSH key, the
root-only key is copied into a credentials folder owned by that user in its private runtime folder
(what ``LoadCredential=`` does under systemd; never in a world-listable /tmp), and so are the second
copy's password and backend variables for the commands that reach its repository; then the process
drops to that user and group for good, before touching anything else.
"""
from __future__ import annotations

import contextlib
import errno
import os
import pwd
import shutil
from pathlib import Path

from ethoscope_rsync.config.load import SSH_KEY, credential, credential_key
from ethoscope_rsync.config.record import Config
from ethoscope_rsync.system.leftovers import scratch

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


def _private_folder(config: Config, account: pwd.struct_passwd) -> Path:
    """The service user's private runtime folder (``private`` beside the status file, 0700, the
    user's), made when missing. Root never follows a link the user could have put there."""
    runtime = config.paths.status_file.parent
    private = runtime / "private"
    for folder, mode in ((runtime, 0o755), (private, 0o700)):
        try:
            os.mkdir(folder, mode)
        except FileExistsError:
            continue                     # the user's already, or root's (then kept root's)
        fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
        try:
            os.fchown(fd, account.pw_uid, account.pw_gid)
            os.fchmod(fd, mode)          # (mkdir's mode is cut by the umask)
        finally:
            os.close(fd)
    if private.is_symlink() or not private.is_dir():
        raise NotADirectoryError(errno.ENOTDIR, "not a folder", str(private))
    return private


def _copy_credentials(config: Config, account: pwd.struct_passwd, key: str, others: tuple) -> Path | None:
    """A credentials folder for `account` in its private runtime folder, holding a copy of the SSH key
    (as ssh-key) and of each of `others` ((name, configured path): what is readable of them). None
    when nothing was copied. Raises IdentityError when the key is required and cannot be copied.
    Named for this process, so that the next command removes it if this one is killed."""
    wanted = ([(SSH_KEY, credential_key(config), key == KEY_REQUIRED)] if key != NO_KEY else []) + [
        (name, credential(name, path), False) for name, path in others]
    try:
        credentials = scratch(_private_folder(config, account), "credentials")
    except OSError as error:
        raise IdentityError(f"cannot hand credentials to {account.pw_name} in "
                            f"{config.paths.status_file.parent}: {error.strerror}") from None
    copied = 0
    try:
        folder = os.open(credentials, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
        try:
            for name, source_path, required in wanted:
                try:
                    with open(source_path, "rb") as source, open(os.open(
                            name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600,
                            dir_fd=folder), "wb") as copy:
                        shutil.copyfileobj(source, copy)
                        os.fchown(copy.fileno(), account.pw_uid, account.pw_gid)
                    copied += 1
                except OSError as error:
                    with contextlib.suppress(OSError):
                        os.unlink(name, dir_fd=folder)
                    if required:
                        raise IdentityError(f"cannot hand the SSH key {source_path} to {account.pw_name}: "
                                            f"{error.strerror}") from None
            os.fchown(folder, account.pw_uid, account.pw_gid)
        finally:
            os.close(folder)
    except (OSError, IdentityError) as error:
        shutil.rmtree(credentials, ignore_errors=True)
        if isinstance(error, IdentityError):
            raise
        raise IdentityError(f"cannot hand credentials to {account.pw_name}: {error.strerror}") from None
    if not copied:
        shutil.rmtree(credentials, ignore_errors=True)
        return None
    return credentials


def become(config: Config, uid: int, key: str = KEY_REQUIRED, others: tuple = ()) -> Path | None:
    """Drop to `uid` (and its primary group) for good. With `key` required (or optional and
    readable), first copy the SSH key for it, and the readable ones of `others` ((credential name,
    configured path)), and point CREDENTIALS_DIRECTORY at the copies.
    Returns the credentials directory, or None (the caller removes it)."""
    try:
        account = pwd.getpwuid(uid)
    except KeyError:
        raise IdentityError(f"{config.paths.state_dir} belongs to uid {uid}, which has no account") from None
    credentials = _copy_credentials(config, account, key, others) if key != NO_KEY or others else None
    os.setgroups([])
    os.setgid(account.pw_gid)
    os.setuid(uid)
    if credentials is not None:
        os.environ["CREDENTIALS_DIRECTORY"] = str(credentials)
    os.environ["HOME"] = account.pw_dir
    return credentials


@contextlib.contextmanager
def as_service_user(config: Config, key: str = KEY_REQUIRED, others: tuple = ()):
    """Run the body as the service user when root started us on a packaged node; else unchanged.
    `others`: further credentials to hand over ((name, configured path)). Yields the credentials
    directory or None; removes it afterwards."""
    owner = service_owner(config)
    credentials = become(config, owner, key, others) if owner is not None else None
    try:
        yield credentials
    finally:
        if credentials is not None:
            shutil.rmtree(credentials, ignore_errors=True)
