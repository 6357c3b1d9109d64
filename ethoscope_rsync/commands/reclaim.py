"""``ethoscope-backup reclaim``: as root, hand what root made under the destinations to the service user.

Run by ``ethoscope-backup.service`` before every pass (``ExecStartPre=+``), and by ``run`` and
``daemon`` when root starts them, before they drop to the service user. See
:mod:`ethoscope_rsync.backup.reclaim`.
"""
from __future__ import annotations

import os
import pwd
import time

from ethoscope_rsync.backup.reclaim import BUDGET, reclaim
from ethoscope_rsync.config.record import Config
from ethoscope_rsync.system.exits import EXIT_OK, EXIT_USAGE
from ethoscope_rsync.system.logs import log
from ethoscope_rsync.system.privileges import service_owner


def run_reclaim(config: Config, out=print) -> int:
    """Every destination of `config`: created if missing, root's folders handed over. Problems are
    warnings (a pass must still run); only a user that is not root is refused."""
    if os.geteuid() != 0:
        out("reclaim: only root can hand root's folders to the service user")
        return EXIT_USAGE
    owner = service_owner(config)
    if owner is None:          # the service runs as root here (or has no state yet): nothing to hand over
        log.debug("reclaim: %s belongs to root: nothing to hand over", config.paths.state_dir)
        return EXIT_OK
    try:
        account = pwd.getpwuid(owner)
    except KeyError:
        log.warning("reclaim: %s belongs to uid %d, which has no account: nothing handed over", config.paths.state_dir,
                    owner)
        return EXIT_OK
    for kind in config.kinds():
        destination = config.destination(kind)
        started = time.monotonic()
        done = reclaim(destination, account.pw_uid, account.pw_gid)
        fields = dict(DESTINATION=kind, RECLAIMED=done.handed)
        if done.problem:
            log.warning("%s destination: %s", kind, done.problem, extra=fields)
            continue
        took = time.monotonic() - started
        if done.handed:
            log.info("handed %d folder(s) root made under %s to %s (looked at %d in %.2f s)", done.handed,
                     destination, account.pw_name, done.seen, took, extra=fields)
        if not done.complete:
            log.warning("%s: looked at %d folder(s) in %.0f s, not all: the rest before the next pass",
                        destination, done.seen, BUDGET, extra=fields)
    return EXIT_OK
