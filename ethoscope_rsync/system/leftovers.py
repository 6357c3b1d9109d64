"""What a process leaves behind when it is killed, and who removes it.

A pass keeps its devices' shared ssh connections in a folder of its own, and a command root starts
hands the service user copies of the SSH key in another. Both are removed when the process ends,
but SIGKILL (the out-of-memory killer, ``systemctl kill``, the end of TimeoutStopSec) skips that.
So each such folder is named for its process (``KIND-PID-random``) and made through ``scratch``,
which first removes the folders of its kind whose process is gone.
"""
from __future__ import annotations

import os
import re
import shutil
import tempfile
from pathlib import Path

_NAME = re.compile(r"(?P<kind>[a-z]+)-(?P<pid>[1-9][0-9]{0,9})-[A-Za-z0-9_]+")


def process_alive(pid: int) -> bool:
    """Whether the process `pid` still runs (a pass's: the same user's, or root's while it hands
    over). Signal 0 tests without sending; an unknown pid (0) counts as alive."""
    if pid <= 0:
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:              # EPERM: it exists
        return True
    return True


def owner_pid(name: str, kind: str) -> int:
    """The pid a scratch folder's name gives for `kind`, 0 when the name is not one of ours."""
    found = _NAME.fullmatch(name)
    return int(found["pid"]) if found and found["kind"] == kind else 0


def sweep(parent: Path, kind: str, alive=process_alive) -> list:
    """Remove `parent`'s folders of `kind` whose process is gone; returns the names removed. Never
    follows a link; what cannot be removed (another user's) stays."""
    removed: list = []
    try:
        entries = list(os.scandir(parent))
    except OSError:
        return removed
    for entry in entries:
        pid = owner_pid(entry.name, kind)
        if not pid or alive(pid):
            continue
        try:
            if not entry.is_dir(follow_symlinks=False):
                continue
        except OSError:
            continue
        shutil.rmtree(entry.path, ignore_errors=True)      # does not follow links inside (fd-based)
        if not os.path.lexists(entry.path):
            removed.append(entry.name)
    return removed


def scratch(parent: Path, kind: str) -> Path:
    """A new private (0700) folder of `kind` in `parent` for this process, after removing those a
    killed process of the same kind left there. Raises OSError when it cannot be made."""
    sweep(parent, kind)
    return Path(tempfile.mkdtemp(prefix=f"{kind}-{os.getpid()}-", dir=parent))
