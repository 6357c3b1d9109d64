"""Folders under the destinations that root made are handed to the service user before a pass.

The passes run as an unprivileged user. Root writes into the same trees too: the node's own
"Backup" button copies a device with ``rsync -rlpt`` inside the node server, as root, and the
upstream tool did so for years. A folder root created (a new experiment's) is one the passes cannot
write into, so the device's next passes would fail on it (a database's recovery, new chunks)
while the button's copy of it grew old. ``ethoscope-backup reclaim`` runs as root right before
each pass (the unit's ``ExecStartPre=+``; a ``run`` or ``daemon`` started by root does it before
dropping its rights) and hands every root-owned *folder* under the devices' folders to the
service user, with ``u+rwx``:

* folders only: a pass replaces a file by renaming a new copy into place, which needs only the
  folder; and a file may be a hard link to one elsewhere (a folder cannot), which chown would
  hand over too;
* never through a symbolic link: each folder is opened with ``O_NOFOLLOW`` relative to its
  parent's descriptor and changed through its own descriptor, so a folder swapped for a link
  meanwhile (the service user can write there) fails to open instead of leading elsewhere;
* only the devices' folders (``<machine id>``) and the package's own ``.ethoscope-backup`` at
  the top of a destination: nothing else of the node (``lost+found``, its reader's cache) is touched;
* bounded on a big archive: a folder whose link count says it has no sub-folders (2, on ext4,
  xfs and tmpfs) is not listed, so the files (thousands of chunks a folder) are never read, and
  the whole walk stops at ``BUDGET`` seconds (the rest waits for the next pass).

The destination folder itself is created when missing and handed over when root owns it (as
systemd-tmpfiles does for the default ones), except a folder of the system (``/``, ``/srv``,
``/home/...``, ``/var/lib``, ...), which is reported instead.
"""
from __future__ import annotations

import dataclasses
import os
import re
import stat
import time
from pathlib import Path

from ethoscope_rsync.backup.rsync import HIDDEN

BUDGET = 60.0                 # seconds one destination's walk may take before each pass
MAX_DEPTH = 16                # folders deeper than any ethoscope tree are not looked into
_DEVICE_FOLDER = re.compile(r"[0-9a-f]{32}")
# Never handed over: what is below these (the system's and the users'), and these folders themselves.
_SYSTEM = ("/bin", "/boot", "/dev", "/etc", "/home", "/lib", "/lib32", "/lib64", "/libx32", "/proc", "/root",
           "/run", "/sbin", "/sys", "/usr", "/var/cache", "/var/lib", "/var/log", "/var/mail", "/var/spool")
_SHARED = ("/var/tmp", "/var/backups", "/var/opt", "/var/local")
_OPEN = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


@dataclasses.dataclass(frozen=True)
class Reclaimed:
    destination: Path
    handed: int = 0              # folders handed to the service user
    seen: int = 0                # folders looked at
    complete: bool = True        # False: stopped by the budget (or a folder that could not be read)
    problem: str = ""            # the destination itself could not be made the service user's


def may_own(path: Path) -> bool:
    """Whether a destination folder may be handed to the service user: not a folder of the system."""
    text = os.path.normpath(str(path))
    return (path.is_absolute() and text.count("/") >= 2 and text not in _SHARED
            and not any(text == top or text.startswith(top + "/") for top in _SYSTEM))


def _own(fd: int, uid: int, gid: int) -> bool:
    """Hand the open folder to uid:gid with u+rwx if root owns it; True when it did."""
    info = os.fstat(fd)
    if info.st_uid != 0:
        return False
    os.fchown(fd, uid, gid)
    if stat.S_IMODE(info.st_mode) & 0o700 != 0o700:
        os.fchmod(fd, stat.S_IMODE(info.st_mode) | 0o700)
    return True


def _top(destination: Path, uid: int, gid: int) -> str:
    """Create the destination if missing and hand it over if root owns it ('' or the problem)."""
    if not destination.exists():
        if not may_own(destination):
            return (f"{destination} is missing and is a folder of the system: create it and give it to the "
                    f"service user (uid {uid})")
        try:
            destination.mkdir(parents=True, mode=0o755)
        except OSError as error:
            return f"cannot create {destination}: {error.strerror or error}"
    try:
        fd = os.open(destination, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError as error:
        return f"cannot open {destination}: {error.strerror or error}"
    try:
        if os.fstat(fd).st_uid == 0:
            if not may_own(destination):
                return (f"{destination} belongs to root and is a folder of the system: the passes cannot "
                        f"write there (choose a folder of its own, e.g. {destination}/ethoscope)")
            _own(fd, uid, gid)
    except OSError as error:
        return f"cannot hand {destination} over: {error.strerror or error}"
    finally:
        os.close(fd)
    return ""


def reclaim(destination: Path, uid: int, gid: int, budget: float = BUDGET, clock=time.monotonic) -> Reclaimed:
    """Hand the root-owned folders of one destination to uid:gid (see the module's docstring)."""
    problem = _top(destination, uid, gid)
    if problem:
        return Reclaimed(destination, problem=problem)
    deadline = clock() + budget
    counts = {"handed": 0, "seen": 0}
    complete = True

    def walk(parent: int, name: str, depth: int) -> None:
        nonlocal complete
        if clock() > deadline or depth > MAX_DEPTH:
            complete = False
            return
        try:
            fd = os.open(name, _OPEN, dir_fd=parent)
        except OSError:         # a link, not a folder any more, gone, unreadable
            return
        try:
            counts["seen"] += 1
            counts["handed"] += _own(fd, uid, gid)
            if os.fstat(fd).st_nlink == 2:          # no sub-folders (where the count says so)
                return
            with os.scandir(fd) as entries:
                folders = [entry.name for entry in entries if entry.is_dir(follow_symlinks=False)]
            for child in folders:
                walk(fd, child, depth + 1)
        except OSError:
            complete = False
        finally:
            os.close(fd)

    try:
        top = os.open(destination, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError as error:
        return Reclaimed(destination, problem=f"cannot open {destination}: {error.strerror or error}")
    try:
        with os.scandir(top) as entries:
            names = [entry.name for entry in entries if entry.is_dir(follow_symlinks=False)
                     and (_DEVICE_FOLDER.fullmatch(entry.name) or entry.name == HIDDEN)]
        for name in sorted(names):
            walk(top, name, 1)
    except OSError:
        complete = False
    finally:
        os.close(top)
    return Reclaimed(destination, counts["handed"], counts["seen"], complete)
