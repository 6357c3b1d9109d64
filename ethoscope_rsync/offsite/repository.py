"""The repository itself: ``offsite --init`` creates it, ``offsite --dry-run`` shows what a run would
send, ``check`` says whether it can be reached with the password (and its free space, where the
backend tells), and ``verify`` reads a rotating share of its data (``restic check
--read-data-subset=N/M``: every pack is read once in M verifications).

The check takes restic's exclusive lock, so it runs under the second copy's own lock: a verify
that finds a run in progress leaves the repository for the next verify.
"""
from __future__ import annotations

import dataclasses
import os
import threading
import time

from ethoscope_rsync.config.load import credential_key
from ethoscope_rsync.config.record import Config
from ethoscope_rsync.offsite import output, restic, schedule
from ethoscope_rsync.offsite.access import Unusable, known_hosts, make_access
from ethoscope_rsync.offsite.run import SHORT, Run, checked, lock_file, select, send
from ethoscope_rsync.render.humanize import format_age, human_size
from ethoscope_rsync.state.offsite import Check
from ethoscope_rsync.state.store import load_history, load_ledger, load_offsite, pass_lock, save_offsite
from ethoscope_rsync.system import execute
from ethoscope_rsync.system.exits import EXIT_FAILED, EXIT_OK, Busy
from ethoscope_rsync.system.logs import Notifier, log, printable

LOW_SPACE = 0.05          # a repository file system less free than this is a warning


def _run(config: Config, stop: threading.Event, seconds: float) -> Run:
    return Run(config, make_access(config), stop, time.monotonic() + seconds)


def init_repository(config: Config, stop: threading.Event, out=print) -> int:
    """``offsite --init``: create the repository (an existing one that the password opens is fine)."""
    try:
        run = _run(config, stop, SHORT)
    except Unusable as problem:
        out(f"offsite --init: {problem.message}")
        return EXIT_FAILED
    shown = run.access.repository.shown
    failure = output.classify(run.run(restic.init_argv(run.access)))
    if failure is not None:
        if output.classify(run.run(restic.config_argv(run.access))) is None:
            out(f"a repository is already at {shown} and the password opens it: nothing to do")
            return EXIT_OK
        out(f"offsite --init: cannot create a repository at {shown}: {failure.problem}: {failure.detail}")
        return EXIT_FAILED
    out(f"created the repository {shown}. Keep a copy of the password file ({config.offsite.password_file}) "
        "away from this node: without it the second copy cannot be read. Then: "
        "systemctl enable --now ethoscope-backup-offsite.timer")
    return EXIT_OK


def preview(config: Config, stop: threading.Event, out=print) -> int:
    """``offsite --dry-run``: what a run would send now (restic backup --dry-run), nothing written."""
    try:
        run = _run(config, stop, config.offsite.timeout)
    except Unusable as problem:
        out(f"offsite --dry-run: {problem.message}")
        return EXIT_FAILED
    selection = checked(config, select(config, load_history(config.history_file), load_ledger(config.offsite_file)),
                        stop, run.deadline)
    out("would send: " + ", ".join(selection.sources) + " to " + run.access.repository.shown)
    for database in selection.held_back:
        out("held back (not verified on this node): " + printable(selection.held_path(database)))
    sent, failure = send(run, selection, Notifier(), dry_run=True)
    if failure is not None:
        out(f"offsite --dry-run: {failure.problem}: {failure.detail}")
        return EXIT_FAILED
    if sent.summary:
        s = sent.summary
        out(f"{s.total_files} files, {human_size(s.total_bytes)}: {s.files_new} new, {s.files_changed} changed, "
            f"{s.files_unmodified} unchanged; about {human_size(s.data_added)} to upload")
    return EXIT_OK


def _space(config: Config, run: Run) -> tuple:
    """(level, words) on the repository's free space, where the backend tells."""
    repository = run.access.repository
    found: tuple | None = None
    if repository.backend == "local":
        folder = repository.path
        while folder and not os.path.exists(folder):
            folder = os.path.dirname(folder.rstrip("/")) or "/"
        try:
            info = os.statvfs(folder)
            found = info.f_blocks * info.f_frsize, info.f_bavail * info.f_frsize
        except OSError:
            found = None
    elif repository.backend == "sftp":
        argv = restic.sftp_df_argv(repository, credential_key(config), known_hosts(config), config.ssh.connect_timeout)
        result = execute.run(argv, timeout=config.ssh.connect_timeout + 30, input=restic.sftp_df_input(repository.path))
        found = output.parse_df(result.stdout) if result.returncode == 0 else None
    if found is None:
        return "ok", f"repository free space: not told by the {repository.backend} backend"
    total, free = found
    level = "warn" if total and free < total * LOW_SPACE else "ok"
    return level, f"repository free space: {human_size(free)} of {human_size(total)}"


def findings(config: Config, now: float, stop: threading.Event) -> list:
    """``check``: (level, words) about the second copy: restic, the password, the repository, its
    space, the newest snapshot."""
    repository = config.offsite.repository
    if repository is None:
        return [("warn", "second copy: none ([offsite] repository is empty): this node's disk is the last copy")]
    version = execute.run((restic.RESTIC, "version"), timeout=30)
    if version.returncode != 0:
        return [("FAIL", "second copy: restic is not installed (apt install restic)")]
    found: list = [("ok", "second copy: " + printable(" ".join(version.stdout.split()[:2]), 80))]
    try:
        run = _run(config, stop, SHORT)
    except Unusable as problem:
        return found + [("FAIL", f"second copy: {problem.message}")]
    failure = output.classify(run.run(restic.config_argv(run.access)))
    if failure is not None:
        hint = " (create it: ethoscope-backup offsite --init)" if failure.problem == output.MISSING else ""
        return found + [("FAIL", f"second copy {repository.shown}: {failure.problem}: {failure.detail}{hint}")]
    found.append(("ok", f"second copy {repository.shown}: reachable, the password opens it"))
    found.append(_space(config, run))
    state = load_offsite(config.offsite_file)
    if state.last is None:
        found.append(("warn", "second copy: no snapshot yet (ethoscope-backup offsite sends one)"))
    else:
        age = now - state.last.time
        old = config.offsite.alert_after and age > config.offsite.alert_after * 86400
        found.append(("warn" if old else "ok", f"second copy: newest snapshot {state.last.id}, {format_age(age)} old"))
    return found


def verify_repository(config: Config, stop: threading.Event, clock=time.time) -> int:
    """``verify``'s part: restic check, reading the next share of the data; recorded in offsite.json."""
    if config.offsite.repository is None:
        return EXIT_OK
    try:
        with pass_lock(lock_file(config)):
            return _check(config, stop, clock)
    except Busy:
        log.warning("verify: the second copy is being sent; its repository is checked at the next verify")
        return EXIT_OK


def _check(config: Config, stop: threading.Event, clock) -> int:
    state = load_offsite(config.offsite_file)
    groups = config.offsite.check_share
    group, following = schedule.next_share(state, groups) if groups else (0, 1)
    share = f"{group}/{groups}" if groups else ""
    assert config.offsite.repository is not None        # verify_repository returns first without one
    log.info("verify: checking the second copy %s%s", config.offsite.repository.shown,
             f", data part {share}" if share else " (structure only)")
    try:
        run = _run(config, stop, config.offsite.timeout)
        failure = output.classify(run.run(restic.check_argv(run.access, group, groups)))
        result_ok = failure is None
        message = "no errors were found" if failure is None else f"{failure.problem}: {failure.detail}"
        damaged = failure is not None and failure.problem == output.DAMAGED
    except Unusable as problem:
        result_ok, message, damaged = False, problem.message, False
    check = Check(clock(), share, not damaged, message if not result_ok else "no errors were found")
    state = dataclasses.replace(load_offsite(config.offsite_file), check=check,
                                next_group=following if result_ok else group)
    save_offsite(config.offsite_file, state)
    fields = {"OFFSITE_CHECK": "damaged" if damaged else "ok" if result_ok else "failed"}
    if result_ok:
        log.info("verify: second copy sound (%s)", share or "structure", extra=fields)
        return EXIT_OK
    (log.error if damaged else log.warning)("verify: second copy %s: %s", "DAMAGED" if damaged else "not checked",
                                            message, extra=fields)
    return EXIT_FAILED if damaged or stop.is_set() else EXIT_OK
