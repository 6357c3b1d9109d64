"""A pass before the SSH key exists (the package installed, a switch on, README's first step not done
yet): not a failure but a wait. The pass records it in the status ("waiting for the SSH key
/etc/ethoscope/keys/id_rsa"), logs it once as a warning and exits 0; the timer's next pass runs as
soon as the key is there. The verdict, ``status`` and the alerts say it in those words.
"""
from __future__ import annotations

import os
import time
from pathlib import Path

from ethoscope_rsync.config.load import credential_key
from ethoscope_rsync.state.model import Pass, Status
from ethoscope_rsync.state.store import write_json_atomic
from ethoscope_rsync.system.exits import EXIT_OK
from ethoscope_rsync.system.logs import log

WAITING = "waiting for the SSH key"        # the pass's outcome


def missing_key(config) -> Path | None:
    """The key a pass would use when it is not there (no credential handed over and no file), else None."""
    key = credential_key(config)
    return None if key is not None and os.path.lexists(key) else (key or config.ssh.key)


def record_waiting(config, key: Path) -> int:
    """The status of a pass that waits for `key`; exit 0 (nothing failed)."""
    message = (f"{WAITING} {key}: put the node's private key there (root, mode 600) and its public key on every "
               "device (README, the first hour); the next pass starts by itself")
    log.warning("%s", message)
    now = time.time()
    status = Status(run=Pass(pid=os.getpid(), started=now, ended=now, outcome=WAITING, message=message), generated=now)
    try:
        write_json_atomic(config.paths.status_file, status.to_json())
    except OSError as error:
        log.error("cannot write the status: %s: %s", error.strerror or error, error.filename or "")
    return EXIT_OK
