"""Command line: ``ethoscope-backup COMMAND [options]``.

COMMAND is one of run, serve, status, check, daemon, forget-host, alert, verify, reclaim, offsite, pause, resume.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
import time
from pathlib import Path

from ethoscope_rsync import __version__
from ethoscope_rsync.config.load import (DEFAULT_CONFIG, ConfigError, credential_files, credential_key,
                                         derive_videos_dir, load_config)
from ethoscope_rsync.config.record import Config
from ethoscope_rsync.config.settings import BY_NAME, PATH, SETTINGS
from ethoscope_rsync.config.devices import DeviceError, parse_selection
from ethoscope_rsync.config.switches import switched_on, switched_what
from ethoscope_rsync.system.exits import EXIT_FAILED, EXIT_OK, EXIT_USAGE
from ethoscope_rsync.system.privileges import (KEY_OPTIONAL, KEY_REQUIRED, NO_KEY, IdentityError,
                                               as_service_user)
from ethoscope_rsync.system.logs import setup
from ethoscope_rsync.state.store import read_json

COMMANDS = ("run", "serve", "status", "check", "daemon", "forget-host", "alert", "verify", "reclaim", "offsite",
            "pause", "resume")
PROG = "ethoscope-backup"
OPTION_PREFIX = "setting:"     # argparse dest of an option that sets [section] key


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-c", "--config", metavar="FILE|DIR", type=Path,
                        help=f"configuration file (default {DEFAULT_CONFIG}); a directory, as with the "
                             "upstream tool, is the folder holding the node's ethoscope.conf, whose "
                             "destinations are used (backup.conf is then read from its default path)")
    parser.add_argument("-D", "--debug", action="store_true", help="debug logging")


def _setting_options(parser: argparse.ArgumentParser, command: str) -> None:
    """The options that set a configuration key (from the settings table), for this command."""
    for setting in SETTINGS:
        flags = [flag for flag in setting.flags if command in flag.commands]
        target = parser.add_mutually_exclusive_group() if len(flags) > 1 else parser
        for flag in flags:
            dest = f"{OPTION_PREFIX}{setting.section}.{setting.key}"
            if flag.const is not None:
                target.add_argument(*flag.options, dest=dest, action="store_const", const=flag.const,
                                    help=flag.help or setting.doc)
            else:
                target.add_argument(*flag.options, dest=dest, metavar=flag.metavar, help=flag.help or setting.doc)


def _selection_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-e", "--ethoscope", metavar="LIST",
                        help='only these devices: 004, 4, ETHOSCOPE_004, a machine id, or "004,007,010"')


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG, description="Back up ethoscope results and videos to this node with rsync over SSH.",
        epilog="Without a command, 'run' is assumed. Exit codes: 0 success or nothing to do, "
               "1 a device failed, 2 usage or configuration error, 75 another pass is running. "
               "See ethoscope-backup(8).")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    run = commands.add_parser("run", help="one backup pass, then exit (what the timer runs)")
    _selection_option(run)
    run.add_argument("-n", "--dry-run", action="store_true",
                     help="discover and show what would be copied, change nothing")
    run.add_argument("--scheduled", action="store_true",
                     help="each device copied whenever [transfer] interval has passed since its own last copy, "
                          "until none is due within a minute (what the timer runs)")
    run.add_argument("--switches", metavar="DIR", type=Path,
                     help="copy only the trees of the node's switches that are on (folders in DIR named "
                          "ethoscope_backup_unified, _sqlite, _video), of those configured; none on: as configured")
    commands.add_parser("serve", help="status web service (socket-activated under systemd)")
    status = commands.add_parser("status", help="show the backup state as a table")
    status.add_argument("--json", action="store_true", help="print the status document as JSON")
    check = commands.add_parser("check", help="diagnose keys, node server, devices and destinations")
    _selection_option(check)
    daemon = commands.add_parser("daemon", help="run a pass every interval and serve the status (no systemd)")
    _selection_option(daemon)
    forget = commands.add_parser("forget-host", help="forget a device's recorded SSH host key "
                                                     "(after its SD card was replaced)")
    forget.add_argument("device", metavar="ETHOSCOPE_NNN", help="device name or number")
    forget.add_argument("--wait", action="store_true", help="during a pass, wait for it to end instead of exiting 75")
    alert = commands.add_parser("alert", help="send what changed since the last alert (run after every pass)")
    alert.add_argument("--test", action="store_true", help="send a test message through every channel")
    alert.add_argument("--heartbeat", action="store_true",
                       help="the heartbeat timer's run: also when no pass ran (passes overdue or stuck, the timer off)")
    verify = commands.add_parser("verify", help="check the node's copies: videos against their .md5, "
                                                "databases with integrity_check")
    _selection_option(verify)
    verify.add_argument("--since", metavar="DAYS", type=float,
                        help="only files changed in the last DAYS days (default: all)")
    commands.add_parser("reclaim", help="as root: create the destinations and hand the folders root made "
                                        "under them to the service user (before every pass)")
    offsite = commands.add_parser("offsite", help="send the node's copies to the second copy's restic repository "
                                                  "([offsite] in the configuration)")
    once = offsite.add_mutually_exclusive_group()
    once.add_argument("--init", action="store_true", help="create the repository (and, as root, a random "
                                                          "password file if there is none)")
    once.add_argument("-n", "--dry-run", action="store_true", help="show what would be sent, send nothing")
    once.add_argument("--if-due", action="store_true", help="only when [offsite] interval or after_passes "
                                                            "says one is due (what the timer runs)")
    pause = commands.add_parser("pause", help="stop copying a device (switched off between experiments) "
                                              "without stale alerts; its history and copies stay")
    pause.add_argument("device", metavar="DEVICE", help="device number, ETHOSCOPE_NNN or machine id")
    pause.add_argument("--reason", default="", help="why, shown on the page, in status and in /metrics")
    pause.add_argument("--until", metavar="DATE", help='YYYY-MM-DD or "YYYY-MM-DD HH:MM": resume by itself then')
    resume = commands.add_parser("resume", help="copy a paused device again")
    resume.add_argument("device", metavar="DEVICE", help="device number, ETHOSCOPE_NNN or machine id")
    for name, sub in commands.choices.items():
        _common(sub)
        _setting_options(sub, name)
        sub.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    return parser


def normalise_argv(argv: list) -> list:
    """'run' is the default command: ethoscope-backup -e 004 == ethoscope-backup run -e 004."""
    if not argv or (argv[0] not in COMMANDS and argv[0] not in ("-h", "--help", "--version")):
        return ["run", *argv]
    return argv


def unknown_command(argv: list) -> str:
    """'' when argv starts with a command or an option; else the refusal of its first word (a typo'd
    command such as 'stat' is not read as 'run stat'), with the nearest command."""
    if not argv or argv[0].startswith("-") or argv[0] in COMMANDS:
        return ""
    import difflib
    near = (difflib.get_close_matches(argv[0], COMMANDS, n=1, cutoff=0.5)
            or [c for c in COMMANDS if c.startswith(argv[0])][:1])
    hint = f" (did you mean '{near[0]}'?)" if near else ""
    if not near and argv[0].upper().removeprefix("ETHOSCOPE_").isdigit():
        hint = f" (a device? ethoscope-backup run -e {argv[0]})"
    return f"unknown command {argv[0]!r}{hint}; the commands: {', '.join(COMMANDS)} (see --help)"


def apply_options(config: Config, args: argparse.Namespace) -> Config:
    """Command-line options override the configuration file; each is checked as its setting is."""
    sections: dict[str, dict] = {}
    for dest, value in vars(args).items():
        if not dest.startswith(OPTION_PREFIX) or value is None:
            continue
        section, _, key = dest[len(OPTION_PREFIX):].partition(".")
        setting = BY_NAME[section, key]
        if isinstance(value, str):
            try:
                value = setting.parse(os.path.abspath(value) if setting.kind is PATH else value)
            except ValueError as error:
                raise ConfigError(f"{'/'.join(setting.flags[0].options)}: {error}") from None
        sections.setdefault(setting.section, {})[setting.key] = value
    paths = sections.get("paths", {})
    if "results" in paths and "videos" not in paths:
        paths["videos"] = derive_videos_dir(paths["results"])
    extra: dict = {"debug": args.debug}
    if getattr(args, "ethoscope", None):
        extra["selection"] = parse_selection(args.ethoscope)
    if getattr(args, "dry_run", False) and args.command != "offsite":
        extra["dry_run"] = True
    if getattr(args, "since", None) is not None and not 0 < args.since <= 36500:
        raise ConfigError("--since: must be a number of days above 0")
    if getattr(args, "switches", None):
        what = sections.get("transfer", {}).get("what", config.transfer.what)
        sections.setdefault("transfer", {})["what"] = switched_what(what, switched_on(args.switches))
    return config.changed(**sections, **extra)


def main(argv: list | None = None) -> int:
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    if unknown_command(argv):
        parser.error(unknown_command(argv))
    args = parser.parse_args(normalise_argv(argv))
    setup(args.debug)
    try:
        config = apply_options(load_config(args.config), args)
    except (ConfigError, DeviceError) as error:
        print(f"{PROG}: configuration error: {error}", file=sys.stderr)
        return EXIT_USAGE
    try:
        return _dispatch(args, config)
    except KeyboardInterrupt:
        return EXIT_FAILED
    except PermissionError as error:
        print(f"{PROG}: permission denied: {error.filename or error}", file=sys.stderr)
        return EXIT_FAILED
    except OSError as error:      # e.g. the status or state directory on a broken filesystem
        print(f"{PROG}: {error.strerror or error}: {error.filename or ''}", file=sys.stderr)
        return EXIT_FAILED


# What each command started by root on a packaged node needs handed over to the service user
# besides the user switch (identity.py): the SSH key, or nothing. `status` only reads: not handed over.
KEY_NEEDS = {"serve": NO_KEY, "check": KEY_OPTIONAL, "daemon": KEY_REQUIRED, "forget-host": NO_KEY,
             "alert": NO_KEY, "verify": NO_KEY, "offsite": KEY_OPTIONAL, "pause": NO_KEY, "resume": NO_KEY}
# Commands that reach the second copy's repository: its password (and backend variables) too, and
# the SSH key where the repository is an sftp one (the key a pass uses).
REACH_REPOSITORY = ("check", "daemon", "verify", "offsite")


def _hand_over(command: str, config) -> tuple:
    """(SSH key need, further credentials) of a command root hands over to the service user."""
    if command not in REACH_REPOSITORY or config.offsite.repository is None:
        return KEY_NEEDS[command], ()
    key = KEY_NEEDS[command]
    if key == NO_KEY and config.offsite.repository.backend == "sftp":
        key = KEY_OPTIONAL
    return key, credential_files(config)


def _dispatch(args: argparse.Namespace, config) -> int:
    if args.command == "status":
        return show_status(config, as_json=args.json)
    if args.command == "reclaim":
        from ethoscope_rsync.commands.reclaim import run_reclaim
        return run_reclaim(config)
    if args.command == "daemon":
        _reclaim_as_root(config)
    try:
        if args.command == "run":
            return run_command(config, getattr(args, "scheduled", False))
        key_finding = None
        if args.command == "check":
            from ethoscope_rsync.commands.check import check_key
            key_finding = check_key(credential_key(config))   # the real key, as its owner sees it
        if args.command == "offsite" and args.init:
            from ethoscope_rsync.commands.offsite import ensure_password
            ensure_password(config)                          # as root: the password file's folder is root's
        key, others = _hand_over(args.command, config)
        with as_service_user(config, key, others):
            return _command(args, config, key_finding)
    except IdentityError as error:
        print(f"{PROG}: {error}", file=sys.stderr)
        return EXIT_USAGE


def _command(args: argparse.Namespace, config, key_finding) -> int:
    if args.command == "serve":
        from ethoscope_rsync.web.adapter import serve
        return serve(config.paths.status_file, config.history_file, listen=config.status.listen,
                     cors_origin=config.status.cors_origin, idle_exit=config.status.idle_exit,
                     stale_after=config.status.stale_after, horizon_days=config.alert.disk_horizon,
                     offsite_file=config.offsite_file, overdue_after=config.status.overdue_after,
                     pauses_file=config.pauses_file)
    if args.command == "check":
        from ethoscope_rsync.commands.check import run_checks
        return run_checks(config, key_finding=key_finding)
    if args.command == "daemon":
        if config.dry_run:
            print(f"{PROG}: daemon: --dry-run is only for a single 'run'", file=sys.stderr)
            return EXIT_USAGE
        from ethoscope_rsync.commands.daemon import run_daemon
        return run_daemon(config)
    if args.command in ("pause", "resume"):
        from ethoscope_rsync.commands import pause
        if args.command == "resume":
            return pause.resume(config, args.device)
        return pause.pause(config, args.device, args.reason, args.until)
    if args.command == "forget-host":
        from ethoscope_rsync.commands.check import forget_host
        return forget_host(config, args.device, wait=args.wait)
    if args.command == "alert":
        from ethoscope_rsync.alerts.report import run_alerts
        return run_alerts(config, dict(os.environ), time.time(), test=args.test, heartbeat=args.heartbeat)
    if args.command == "verify":
        from ethoscope_rsync.backup.verify import run_verify
        stop = threading.Event()
        code = run_verify(config, args.since or 0.0, stop)
        if config.offsite.repository is None or config.selection or args.since or stop.is_set():
            return code                 # the repository is checked by a whole verify only
        from ethoscope_rsync.offsite.repository import verify_repository
        return max(code, verify_repository(config, stop))
    if args.command == "offsite":
        from ethoscope_rsync.commands.offsite import offsite_command
        return offsite_command(config, args.init, args.dry_run, args.if_due)
    raise AssertionError(args.command)


def run_command(config, scheduled: bool = False) -> int:
    """``run``: a preview with --dry-run, else a pass (`scheduled`: each device on its own clock); both as
    the service user when root starts them."""
    from ethoscope_rsync.backup.passes import StopRequest, run_pass
    from ethoscope_rsync.backup.schedule import Schedule
    if not config.kinds():
        from ethoscope_rsync.system.logs import log
        log.info("nothing to copy: the node's switches that are on turn on none of the trees [transfer] what "
                 "copies (%s)", config.source)
        return EXIT_OK
    stop = StopRequest()
    if not config.dry_run:
        _reclaim_as_root(config)
    with as_service_user(config, KEY_REQUIRED):
        if config.dry_run:
            from ethoscope_rsync.backup.preview import preview_pass
            return preview_pass(config)
        from ethoscope_rsync.backup.keywait import missing_key, record_waiting
        missing = missing_key(config)
        if missing is not None:            # installed before the key: a wait, not a failure
            return record_waiting(config, missing)
        code = run_pass(config, stop, Schedule.every(config.transfer.interval) if scheduled else None)
    if stop.signum:       # die by the signal, as systemd expects of a service it stops
        signal.signal(stop.signum, signal.SIG_DFL)
        os.kill(os.getpid(), stop.signum)
    return code


def _reclaim_as_root(config) -> None:
    """A pass root starts by hand first hands root's folders over, as the unit's ExecStartPre=+ does."""
    if os.geteuid() == 0:
        from ethoscope_rsync.commands.reclaim import run_reclaim
        run_reclaim(config)


def show_status(config, as_json: bool) -> int:
    from ethoscope_rsync.state.model import settled  # not loaded by a pass
    from ethoscope_rsync.render.terminal import terminal_status
    from ethoscope_rsync.system.leftovers import process_alive
    from ethoscope_rsync.state import offsite
    status, history = read_json(config.paths.status_file), read_json(config.history_file)
    status = settled(status, process_alive)
    second = read_json(config.offsite_file)
    if second is not None:
        second = offsite.settled(offsite.OffsiteState.from_json(second), process_alive).to_json()
    history = offsite.attach(history, second)
    from ethoscope_rsync.state import pauses
    history = pauses.attach(history, read_json(config.pauses_file))
    from ethoscope_rsync.render import verdict
    now, stale_after = time.time(), config.status.stale_after
    judged = verdict.judged(status, history, now, stale_after, config.status.overdue_after)
    if as_json:
        print(json.dumps({"verdict": verdict.document(judged, now), "status": status, "history": history},
                         indent=1, sort_keys=True))
    else:
        lines = terminal_status(status, history, now, stale_after, config.alert.disk_horizon)
        print("\n".join([verdict.line(judged, now)] + ([""] + lines if judged.devices else [])))
    return verdict.exit_code(judged)
