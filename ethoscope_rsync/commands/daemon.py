"""``ethoscope-backup daemon``: the upstream "service mode" for hosts without systemd.

One process serves the status URLs (same app as ``serve``) and runs a backup pass and the alerts
(what ``ethoscope-backup-alert.service`` does under systemd), then waits ``[daemon] interval``
seconds after its end before the next, until SIGTERM/SIGINT.
"""
from __future__ import annotations

import signal
import threading
import time

from ethoscope_rsync.alerts.report import run_alerts
from ethoscope_rsync.config.load import Config
from ethoscope_rsync.system.logs import log
from ethoscope_rsync.system.exits import EXIT_OK, EXIT_USAGE
from ethoscope_rsync.backup.passes import run_pass
from ethoscope_rsync.web.adapter import ServeError, StatusServer


def run_daemon(config: Config, stop: threading.Event | None = None) -> int:
    stop = stop or threading.Event()

    def on_signal(signum, frame):
        log.info("received %s: finishing", signal.Signals(signum).name)
        stop.set()

    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, on_signal)
    server = StatusServer(str(config.status_file), str(config.history_file), listen=config.listen,
                          cors_origin=config.cors_origin, stale_after=config.stale_after, horizon_days=config.disk_horizon)
    try:
        server.start()
    except ServeError as error:
        log.error("cannot serve the status: %s", error)
        return EXIT_USAGE
    log.info("daemon: status on %s, a pass every %.0fs", config.listen, config.daemon_interval)
    code = EXIT_OK
    try:
        while not stop.is_set():
            code = run_pass(config, stop)
            try:
                run_alerts(config, {}, time.time())
            except OSError as error:       # e.g. the state dir turned read-only: the passes go on
                log.warning("alerts not sent: %s", error)
            log.info("daemon: pass ended with exit code %d; next in %.0fs", code, config.daemon_interval)
            stop.wait(config.daemon_interval)
    finally:
        server.stop()
    return code
