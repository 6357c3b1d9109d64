"""``ethoscope-backup daemon``: the upstream "service mode" for hosts without systemd.

One process serves the status URLs (same app as ``serve``) and runs scheduled passes (each device
copied whenever ``[daemon] interval`` seconds have passed since its own last copy ended, as ``run
--scheduled`` under the timer with ``[transfer] interval``), the second copy when one is due and the
alerts (what ``ethoscope-backup-offsite.timer`` and ``ethoscope-backup-alert.service`` do under
systemd) between them, until SIGTERM/SIGINT.
"""
from __future__ import annotations

import signal
import threading
import time

from ethoscope_rsync.alerts.report import run_alerts
from ethoscope_rsync.config.record import Config
from ethoscope_rsync.system.logs import log
from ethoscope_rsync.system.exits import EXIT_OK, EXIT_USAGE
from ethoscope_rsync.backup.passes import run_pass
from ethoscope_rsync.backup.schedule import Schedule
from ethoscope_rsync.offsite.run import run_offsite
from ethoscope_rsync.web.adapter import ServeError, StatusServer
from ethoscope_rsync.backup.keywait import missing_key, record_waiting


def run_daemon(config: Config, stop: threading.Event | None = None) -> int:
    stopping = stop or threading.Event()

    def on_signal(signum, frame):
        log.info("received %s: finishing", signal.Signals(signum).name)
        stopping.set()

    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, on_signal)
    server = StatusServer(str(config.paths.status_file), str(config.history_file), listen=config.status.listen,
                          cors_origin=config.status.cors_origin, stale_after=config.status.stale_after,
                          horizon_days=config.alert.disk_horizon, offsite_file=str(config.offsite_file),
                          overdue_after=config.status.overdue_after, pauses_file=str(config.pauses_file))
    try:
        server.start()
    except ServeError as error:
        log.error("cannot serve the status: %s", error)
        return EXIT_USAGE
    schedule = Schedule.every(config.daemon.interval)
    log.info("daemon: status on %s, each device copied %.0fs after its last copy", config.status.listen,
             config.daemon.interval)
    code = EXIT_OK
    try:
        while not stopping.is_set():
            waiting = missing_key(config)           # the key not there yet: a wait, said in the status
            code = record_waiting(config, waiting) if waiting is not None else run_pass(config, stopping, schedule)
            if not stopping.is_set():     # the second copy, when one is due (what its timer does under systemd)
                run_offsite(config, if_due=True, stop=stopping)
            try:
                run_alerts(config, {}, time.time())
            except (OSError, ValueError) as error:    # the state dir turned read-only, a bad document: the passes go on
                log.warning("alerts not sent: %s", error)
            log.debug("daemon: pass ended with exit code %d", code)
            stopping.wait(min(config.daemon.interval, schedule.linger / 2))   # as the timer looks again
    finally:
        server.stop()
    return code
