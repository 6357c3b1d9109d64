"""``ethoscope-backup offsite [--init | --dry-run | --if-due]``: the second copy, by hand or by its timer.

``--init`` started by root first creates the password file when there is none (random, root-only:
the operator keeps a copy elsewhere), then hands over to the service user as every command does.
"""
from __future__ import annotations

import os
import secrets
import signal
from pathlib import Path

from ethoscope_rsync.config.record import Config
from ethoscope_rsync.system.exits import EXIT_USAGE
from ethoscope_rsync.system.logs import log

PASSWORD_BYTES = 32


def ensure_password(config: Config, out=print) -> None:
    """As root, before the hand-over: a random password file where [offsite] password_file names
    none (mode 600, its folder 700 when created). Never replaces an existing one."""
    path: Path = config.offsite.password_file
    if config.offsite.repository is None or os.geteuid() != 0 or path.exists():
        return
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    with open(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "w") as handle:
        handle.write(secrets.token_urlsafe(PASSWORD_BYTES) + "\n")
    out(f"created a random password in {path} (root only)")


def offsite_command(config: Config, init: bool, dry_run: bool, if_due: bool) -> int:
    from ethoscope_rsync.offsite import repository, run
    stop = run.Stop()
    run.install_stop(stop)
    if config.offsite.repository is None and (init or dry_run):
        print("offsite: no [offsite] repository is set in " + config.source)
        return EXIT_USAGE
    if init:
        code = repository.init_repository(config, stop)
    elif dry_run:
        code = repository.preview(config, stop)
    else:
        code = run.run_offsite(config, if_due=if_due, stop=stop)
    if stop.signum:       # die by the signal, as systemd expects of a service it stops
        log.debug("offsite: ending by signal %d", stop.signum)
        signal.signal(stop.signum, signal.SIG_DFL)
        os.kill(os.getpid(), stop.signum)
    return code
