"""Non-blocking flocks for the commands that must not run twice at once (alert, verify).

Released by the kernel when the process ends, however it ends: no stale lock files. The pass has
its own lock (``runner.pass_lock``); these never wait for it, nor it for them.
"""
from __future__ import annotations

import contextlib
import errno
import fcntl
import os
from pathlib import Path


@contextlib.contextmanager
def try_lock(path: Path):
    """Yields True when the lock on `path` is ours, False when another process holds it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o664)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as error:
            if error.errno not in (errno.EWOULDBLOCK, errno.EACCES):
                raise
            yield False
            return
        yield True
    finally:
        os.close(fd)
