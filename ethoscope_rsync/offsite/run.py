"""``ethoscope-backup offsite``: send the node's copies to the second copy's repository, once.

A run: its own lock (never the pass's: restic only reads, see sources.py, so a pass may go on
beside it); with ``--if-due`` (the timer) nothing unless one is due (schedule.py); ``restic
unlock`` first only after a run that did not end well (it may have left its lock; unlock removes
only stale ones); one ``restic backup`` of the destinations; then, once a day from the second day on,
the retention (``forget``, and ``prune`` when due) and what the repository stores (``restic
stats``; added up from each snapshot's new bytes between). Every restic command runs within what is left of
``[offsite] timeout``; a stop (SIGTERM) ends restic with SIGINT, which makes it remove its lock. The
outcome goes to ``offsite.json`` (read by the status, the page, /metrics and the alerts) and to the
journal (``OFFSITE_RESULT``, ``OFFSITE_PROBLEM``, ``OFFSITE_SNAPSHOT``, ``OFFSITE_BYTES_ADDED``).

Nothing here writes under the destinations: the node's archive is only read.
Exit: 0 sent (or nothing due, or nothing configured), 1 failed or stopped, 75 another run holds the
lock.
"""
from __future__ import annotations

import dataclasses
import os
import signal
import tempfile
import threading
import time
from pathlib import Path

from ethoscope_rsync.config.record import KIND_TREES, Config
from ethoscope_rsync.offsite import output, restic, schedule, sources
from ethoscope_rsync.offsite.access import Unusable, host_name, make_access
from ethoscope_rsync.render.humanize import human_size
from ethoscope_rsync.state.offsite import FAILED, INTERRUPTED, OK, RUNNING, OffsiteState, Snapshot
from ethoscope_rsync.state.store import (load_history, load_ledger, load_offsite, pass_lock, save_ledger,
                                         save_offsite)
from ethoscope_rsync.system import execute
from ethoscope_rsync.system.exits import EXIT_BUSY, EXIT_FAILED, EXIT_OK, Busy
from ethoscope_rsync.system.logs import Notifier, log, printable

PROGRESS_EVERY = 60.0        # seconds between two progress lines in the journal
SHORT = 300.0                # seconds a quick restic command (unlock, stats) may take at most
# Seconds restic gets after SIGINT to finish what it writes and remove its lock (a pack held up by
# --limit-upload takes a while) before SIGKILL; within the unit's TimeoutStopSec=1min.
CLEAN_UP = 30.0


def lock_file(config: Config) -> Path:
    return config.paths.state_dir / "offsite.lock"


class Stop(threading.Event):
    """Set by SIGTERM/SIGINT; remembers the signal (the command then dies by it, as systemd expects)."""
    signum = 0


def install_stop(stop: Stop) -> None:
    def handler(signum, frame):
        log.warning("received %s: stopping the second copy", signal.Signals(signum).name)
        stop.signum = signum
        stop.set()
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, handler)
        signal.signal(signal.SIGINT, handler)


@dataclasses.dataclass
class Sent:
    """What one ``restic backup`` did."""
    summary: output.Summary | None = None
    errors: int = 0
    first_error: str = ""


class _Watcher:
    """restic's --json lines: progress to the journal now and then, the summary, unreadable files."""

    def __init__(self, notifier: Notifier, clock=time.monotonic):
        self.sent, self.notifier, self.clock = Sent(), notifier, clock
        self._logged = clock()

    def __call__(self, line: str) -> None:
        item = output.parse_backup_line(line)
        if isinstance(item, output.Summary):
            self.sent.summary = item
        elif isinstance(item, output.FileError):
            self.sent.errors += 1
            if self.sent.errors <= 5:
                log.warning("second copy: cannot read %s: %s", item.item, item.error)
            self.sent.first_error = self.sent.first_error or f"{item.item}: {item.error}"
        elif isinstance(item, output.Progress):
            text = (f"second copy: {item.percent:.0f}%, {item.files_done}/{item.total_files} files, "
                    f"{human_size(item.bytes_done)} of {human_size(item.total_bytes)}")
            self.notifier.status(text)
            if self.clock() - self._logged >= PROGRESS_EVERY:
                self._logged = self.clock()
                log.info("%s", text)


class Run:
    """One run's restic commands, each within what is left of the run's time."""

    def __init__(self, config: Config, access: restic.Access, stop: threading.Event, deadline: float):
        self.config, self.access, self.stop, self.deadline = config, access, stop, deadline
        self.env = restic.environment(access)

    def left(self, at_most: float | None = None) -> float:
        left = max(1.0, self.deadline - time.monotonic())
        return min(left, at_most) if at_most else left

    def run(self, argv: tuple, at_most: float | None = None) -> execute.Result:
        return execute.run(argv, timeout=self.left(at_most), stop=self.stop, env=self.env, stop_signal=signal.SIGINT,
                           stop_grace=CLEAN_UP)

    def stream(self, argv: tuple, on_line) -> execute.Result:
        return execute.stream(argv, on_line, timeout=self.left(), stop=self.stop, env=self.env,
                              stop_signal=signal.SIGINT, stop_grace=CLEAN_UP)


def _fields(state: OffsiteState) -> dict:
    fields: dict = {"OFFSITE_RESULT": state.outcome, "OFFSITE_PROBLEM": state.problem}
    if state.last:
        fields.update(OFFSITE_SNAPSHOT=state.last.id, OFFSITE_BYTES_ADDED=state.last.added)
    return fields


def _failed(state: OffsiteState, problem: str, message: str, now: float, stopped: bool = False) -> OffsiteState:
    stopped = stopped or problem == output.STOPPED
    return dataclasses.replace(state, pid=0, ended=now, outcome=INTERRUPTED if stopped else FAILED,
                               problem=problem, message=printable(message, 400),
                               failures=state.failures + 1, since=state.since if state.failures else now)


def select(config: Config, history, ledger: dict) -> sources.Selection:
    roots = {kind: config.destination(kind) for kind in KIND_TREES[config.offsite.what]}
    found = [d for kind, root in roots.items() for d in sources.find_databases(kind, root)]
    return sources.select(roots, config.offsite.databases, history, ledger, found)


def checked(config: Config, selection: sources.Selection, stop: threading.Event, deadline: float) -> sources.Selection:
    """The databases held back checked here (within half of the run's time left), as verify checks them."""
    if not selection.held_back or config.offsite.databases != "verified":
        return selection
    from ethoscope_rsync.system.untrusted_sqlite import integrity_problem     # sqlite3: only when there is a check
    until = time.monotonic() + (deadline - time.monotonic()) / 2
    selection, damaged = sources.check_held(selection, integrity_problem, config.transfer.database_check_timeout,
                                            stop, until)
    for database, problem in damaged:
        log.error("second copy: %s/%s held back: not sound on this node: %s", database.kind, database.path, problem)
    return selection


def _exclude_file(folder: str, selection: sources.Selection) -> Path | None:
    """The databases held back, one exclude pattern each, in a private file (None: none)."""
    if not selection.held_back:
        return None
    path = Path(folder) / "held-back"
    with open(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "wb") as handle:
        for database in selection.held_back:
            handle.write(restic.exclude_line(selection.held_path(database)))
    return path


def send(run: Run, selection: sources.Selection, notifier: Notifier, dry_run: bool = False) -> tuple:
    """One restic backup of the selection -> (Sent, Failure or None)."""
    with tempfile.TemporaryDirectory(prefix="ethoscope-offsite-") as folder:
        exclude = _exclude_file(folder, selection)
        argv = restic.backup_argv(run.access, selection.sources, exclude, host=host_name(),
                                  limit_upload=run.config.offsite.bwlimit, dry_run=dry_run)
        watcher = _Watcher(notifier)
        result = run.stream(argv, watcher)
    return watcher.sent, output.classify(result)


def retain(run: Run, state: OffsiteState, now: float) -> tuple:
    """forget, and prune when due -> (state, Failure or None)."""
    offsite = run.config.offsite
    keep = restic.Retention(offsite.keep_daily, offsite.keep_weekly, offsite.keep_monthly)
    result = run.run(restic.forget_argv(run.access, keep, host=host_name()))
    failure = output.classify(result)
    if failure is not None:
        return state, failure
    removed = output.parse_forget(result.stdout) or 0
    state = dataclasses.replace(state, forgot=now, forgotten=state.forgotten + removed)
    log.info("second copy: retention kept daily %d, weekly %d, monthly %d; %d snapshot(s) forgotten",
             keep.daily, keep.weekly, keep.monthly, removed)
    if not schedule.prune_due(state, now, offsite.prune_interval):
        return state, None
    failure = output.classify(run.run(restic.prune_argv(run.access)))
    if failure is None:
        log.info("second copy: the data of %d forgotten snapshot(s) pruned", state.forgotten)
        state = dataclasses.replace(state, pruned=now, forgotten=0)
    return state, failure


def _stored(run: Run) -> int:
    result = run.run(restic.stats_argv(run.access), at_most=SHORT)
    return (output.parse_stats(result.stdout) or 0) if result.returncode == 0 else 0


def run_offsite(config: Config, *, if_due: bool = False, stop: threading.Event | None = None,
                clock=time.time) -> int:
    """One run of the second copy; the exit code."""
    stop = stop if stop is not None else Stop()
    if config.offsite.repository is None:
        (log.debug if if_due else log.info)("no [offsite] repository is set: no second copy to send")
        return EXIT_OK
    try:
        with pass_lock(lock_file(config)):
            return _locked(config, if_due, stop, clock)
    except Busy:
        log.error("another second copy run (or its check) is in progress; this one exits without doing anything")
        return EXIT_BUSY


def _configured(state: OffsiteState, config: Config) -> OffsiteState:
    assert config.offsite.repository is not None          # run_offsite returns first without one
    return dataclasses.replace(state, repository=config.offsite.repository.shown,
                               alert_after=config.offsite.alert_after)


def _locked(config: Config, if_due: bool, stop: threading.Event, clock) -> int:
    now = clock()
    state, history = _configured(load_offsite(config.offsite_file), config), load_history(config.history_file)
    why = schedule.due(state, now, config.offsite.interval, config.offsite.after_passes, history.good_passes)
    if if_due and not why:
        log.debug("second copy: nothing due")
        if state != load_offsite(config.offsite_file):
            save_offsite(config.offsite_file, state)
        return EXIT_OK
    log.info("second copy to %s: %s", state.repository, why or "started by hand")
    try:
        access = make_access(config)
    except Unusable as problem:
        return _end(config, _failed(state, problem.problem, problem.message, clock()))
    killed_before = state.outcome not in ("", OK)
    state = dataclasses.replace(state, pid=os.getpid(), started=now, outcome=RUNNING, message="sending")
    save_offsite(config.offsite_file, state)
    run = Run(config, access, stop, time.monotonic() + config.offsite.timeout)
    if killed_before:         # a run killed or failed may have left its lock: stale ones go
        failure = output.classify(run.run(restic.unlock_argv(access), at_most=SHORT))
        if failure is not None:
            return _end(config, _failed(state, failure.problem, failure.detail, clock(), stop.is_set()))
    known = load_ledger(config.offsite_file)
    selection = checked(config, select(config, history, known), stop, run.deadline)
    ledger = selection.ledger if selection.ledger != known else None        # written only when it changed
    for example in selection.examples[:5]:
        log.warning("second copy: %s held back: not verified on this node", example)
    state = dataclasses.replace(state, held_back=len(selection.held_back), held_examples=selection.examples)
    first = state.last is None           # nothing of ours to forget yet: the retention waits a day
    sent, failure = send(run, selection, Notifier())
    if failure is None and (sent.summary is None or not sent.summary.snapshot):
        failure = output.Failure(output.FAILED, "restic ended without naming the snapshot it took")
    state = _record_snapshot(state, sent, now, history.good_passes)
    if failure is not None:
        detail = failure.detail if failure.problem != output.UNREADABLE else (
            f"{sent.errors} file(s) not read, e.g. {sent.first_error}")
        return _end(config, _failed(state, failure.problem, detail, clock(), stop.is_set()), ledger)
    retained = not first and schedule.retain_due(state, now)
    if retained:
        state, failure = retain(run, state, now)
        if failure is not None:
            return _end(config, _failed(state, failure.problem, "snapshot sent, retention failed: "
                                        + failure.detail, clock(), stop.is_set()), ledger)
    last = state.last
    assert last is not None                  # failure is None: _record_snapshot recorded the snapshot sent
    stored = _stored(run) if retained else (         # measured once a day, with the retention
        state.repository_bytes + last.added if state.repository_bytes else 0)
    message = (f"snapshot {last.id}: {last.files} files, {human_size(last.bytes)}, "
               f"{human_size(last.added)} new" + (f"; {state.held_back} database(s) held back"
                                                  if state.held_back else ""))
    state = dataclasses.replace(state, pid=0, ended=clock(), outcome=OK, problem="", message=message, failures=0,
                                since=0.0, repository_bytes=stored or state.repository_bytes)
    return _end(config, state, ledger)


def _record_snapshot(state: OffsiteState, sent: Sent, started: float, good_passes: int) -> OffsiteState:
    summary = sent.summary
    if summary is None or not summary.snapshot:
        return state
    snapshot = Snapshot(summary.snapshot, started, summary.total_files, summary.total_bytes, summary.data_added,
                        round(summary.seconds, 1))
    return dataclasses.replace(state, last=snapshot, good_passes=good_passes)


def _end(config: Config, state: OffsiteState, ledger: dict | None = None) -> int:
    """Write the state (and the ledger) and say how it went, in one line."""
    try:
        if ledger is not None:
            save_ledger(config.offsite_file, ledger)
        save_offsite(config.offsite_file, state)
    except OSError as error:
        log.error("cannot write the second copy's state: %s: %s", error.strerror or error, error.filename or "")
        return EXIT_FAILED
    if state.outcome == OK:
        log.info("second copy sent: %s", state.message, extra=_fields(state))
        return EXIT_OK
    log.error("second copy %s: %s: %s", "stopped" if state.outcome == INTERRUPTED else "failed", state.problem,
              state.message, extra=_fields(state))
    return EXIT_FAILED
