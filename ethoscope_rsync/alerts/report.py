"""``ethoscope-backup alert``: send what changed since the last run.

A message that a channel did not take (the mail server down, the webhook answering 500) is kept in
``alerts.json`` and tried again, on that channel only, by every later run for RETRY_FOR, oldest
first and marked delayed; at most MAX_UNDELIVERED are kept. A channel that fails in a run is not
tried again in that run, so a dead channel costs one ``[alert] timeout`` per run, not one per message.
"""
from __future__ import annotations

import logging
import socket
import time

from ethoscope_rsync.alerts import channels as notify
from ethoscope_rsync.alerts.conditions import conditions, transitions
from ethoscope_rsync.render import alert as render_alert
from ethoscope_rsync.state.alerts import (MAX_UNDELIVERED, RETRY_FOR, Change, Condition, Undelivered, bounded,
                                          read_pinged, read_state, read_undelivered, state_document)
from ethoscope_rsync.state.store import load_history, load_status, pass_lock, read_json, write_json_atomic
from ethoscope_rsync.system.exits import EXIT_FAILED, EXIT_OK, Busy
from ethoscope_rsync.system.logs import log
from ethoscope_rsync.state.model import DAY, ERROR, RUNNING


def _give_up(messages: list, why: str) -> None:
    for message in messages:
        log.warning("alert given up (%s): %s by %s, first tried %s", why, message.subject, message.channel,
                    time.strftime("%Y-%m-%d %H:%M", time.localtime(message.since)))


def send_pending(config, pending: list) -> tuple:
    """Try every undelivered message again on its channel, oldest first, marked delayed; a channel
    that fails is not tried again in this run. Returns (still undelivered, channels that failed)."""
    still, dead = [], set()
    for message in pending:
        if message.channel not in dead:
            failed = notify.send(config, "(delayed) " + message.subject, message.text,
                                 dict(message.document, delayed_since=message.since), only=(message.channel,))
            if not failed:
                log.info("alert delivered late by %s: %s", message.channel, message.subject)
                continue
            dead.add(message.channel)
        still.append(message)
    return still, dead


GOOD_PASSES = ("success", "nothing to do")


def good_moment(status, history) -> float:
    """When the node last backed up well: the end of the newest pass that ended well or, while a
    scheduled pass runs (a straggler may keep it alive for days), the end of its newest round in which
    every device was copied (the history it saves every 30 s), if no device's last copy failed."""
    run = status.run
    if run.outcome in GOOD_PASSES:
        return run.ended
    if run.outcome == RUNNING and not any(device.state == ERROR for device in status.devices.values()):
        return history.last_backup
    return 0.0


def ping_after_good_pass(config, status, history, pinged: float) -> float:
    """[alert] ping_url fetched once for each newer :func:`good_moment`; returns the moment last pinged
    (unchanged when there was nothing to ping or the ping failed: tried again)."""
    moment = good_moment(status, history)
    if not config.alert.ping_url or moment <= pinged:
        return pinged
    problem = notify.ping(config.alert.ping_url, config.alert.timeout, notify.auth_of(config))
    if problem:
        log.warning("ping_url not reached: %s", problem)
        return pinged
    log.info("pinged %s after the %s that ended %s", config.alert.ping_url.split("?")[0],
             "round of the running pass" if status.run.outcome == RUNNING else "pass",
             time.strftime("%H:%M:%S", time.localtime(moment)))
    return moment


def run_alerts(config, monitor: dict, now: float, test: bool = False, heartbeat: bool = False) -> int:
    """``ethoscope-backup alert``: send what changed since the last run (exit 0 even when a channel
    failed: that is a warning); with `test`, a test message through every channel (exit 1 if one failed).
    `heartbeat` (``--heartbeat``, from its timer): systemd's MONITOR_* of a unit are not ours to read."""
    if heartbeat:
        monitor = {}
    node = socket.gethostname() or "this node"
    if test:
        change = Change(Condition("test", "", "test message"), True, "", now)
        subject = "ethoscope backup on %s: test message" % node
        text = "A test of the alert channels of %s, sent by ethoscope-backup alert --test.\n" % node
        notify.journal([("", subject, {})])
        document = dict(render_alert.document([change], node, now, subject, text), event="test")
        return EXIT_FAILED if notify.send(config, subject, text, document) else EXIT_OK
    try:
        with pass_lock(config.paths.state_dir / "alerts.lock"):      # the pass's kind of flock, on a file of its own
            recorded = read_json(config.alerts_file)
            pending, expired = read_undelivered(recorded, notify.channels(config), now)
            _give_up(expired, "undelivered for %d days" % (RETRY_FOR // DAY))
            undelivered, dead = send_pending(config, pending)
            status, history = load_status(config.paths.status_file), load_history(config.history_file)
            found = conditions(config, history, status, monitor, now)
            if heartbeat:
                log.info("heartbeat: %s", "; ".join(
                    "%s: %s" % (c.subject, c.problem or ("unknown" if c.problem is None else "ok"))
                    for c in found if c.subject in ("passes", "timer")))
            changes, state = transitions(read_state(recorded), found)
            if changes:
                url = "http://%s:%d/" % (node, config.status.listen.port)
                notify.journal(render_alert.journal_entries(changes, now))
                subject, text, document = render_alert.messages(changes, node, now, url, notify.MAX_BODY)
                live = tuple(c for c in notify.channels(config) if c not in dead)
                failed = set(notify.send(config, subject, text, document, only=live)) | dead
                undelivered += [Undelivered(channel, subject, text, document, now)
                                for channel in notify.channels(config) if channel in failed]
            undelivered, dropped = bounded(undelivered)
            _give_up(dropped, "more than %d undelivered" % MAX_UNDELIVERED)
            pinged = ping_after_good_pass(config, status, history, read_pinged(recorded))
            write_json_atomic(config.alerts_file, state_document(state, now, undelivered, pinged))
    except Busy:
        log.info("another alert run is in progress; it sends what changed")
        return EXIT_OK
    # (a run after a pass that changed nothing says nothing: the timer's passes come every 30 s)
    log.log(logging.INFO if changes else logging.DEBUG, "alert: %d change(s) sent; %d subject(s) in trouble",
            len(changes), sum(1 for c in found if c.problem))
    return EXIT_OK
