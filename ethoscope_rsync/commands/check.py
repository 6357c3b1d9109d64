"""``ethoscope-backup check``: the troubleshooting section of the old tool, as a command.

One line per finding — ``ok``, ``warn`` or ``FAIL`` — each failure saying what to do.
Also ``forget-host``: drop a device's recorded host key after its SD card was replaced.
"""
from __future__ import annotations

import os
import shlex
import stat
import tempfile
import threading
import time
from pathlib import Path

from ethoscope_rsync.system import execute
from ethoscope_rsync.system.logs import printable
from ethoscope_rsync.render import escape
from ethoscope_rsync.system.units import PASS_UNIT, covered, parse_paths, refusal
from ethoscope_rsync.config.load import credential_key
from ethoscope_rsync.config.record import Config
from ethoscope_rsync.config.devices import DeviceError, parse_selection
from ethoscope_rsync.backup.discovery import DiscoveryError, discover
from ethoscope_rsync.backup.confine import find_links
from ethoscope_rsync.backup.destinations import free_space_problem, nearest_existing
from ethoscope_rsync.backup.rsync import classify_exit, make_ssh_command, ssh_target
from ethoscope_rsync.system.exits import EXIT_BUSY, EXIT_FAILED, EXIT_OK, EXIT_USAGE, Busy
from ethoscope_rsync.backup.pins import forget_hint, identities, remove_host_keys, unpin
from ethoscope_rsync.offsite.repository import findings as offsite_findings
from ethoscope_rsync.state.store import load_history, pass_lock, save_history


def check_key(path: Path) -> tuple:
    try:
        info = path.stat()
        with open(path, "rb"):
            pass
    except FileNotFoundError:
        return "FAIL", f"SSH key {path} is missing: copy the lab key there (mode 600) or set [ssh] key"
    except PermissionError:
        return "FAIL", f"SSH key {path} is not readable by this user: run as root or via the service"
    if stat.S_IMODE(info.st_mode) & 0o077:
        return "FAIL", f"SSH key {path} is readable by others; ssh refuses it: chmod 600 {path}"
    return "ok", f"SSH key {path}"


def check_destination(path: Path, reserve: int) -> tuple:
    probe = nearest_existing(path)
    if not os.access(probe, os.W_OK):
        return "FAIL", f"destination {path} is not writable (nearest existing folder {probe})"
    if probe == path:
        try:
            tempfile.TemporaryFile(dir=path).close()
        except OSError as error:
            return "FAIL", f"destination {path}: cannot create files ({error.strerror})"
    problem = free_space_problem(path, reserve)
    if problem:
        return "FAIL", problem
    return "ok", f"destination {path} writable" + ("" if probe == path else " (will be created)")


LINKS_BUDGET = 30.0      # seconds `check` spends looking for symbolic links under one destination


def check_links(path: Path, budget: float = LINKS_BUDGET) -> tuple:
    """The symbolic links under a destination (see backup.confine): FAIL for those leading out of
    their device's folder, which the pass refuses to write through."""
    if not path.is_dir():
        return "ok", f"no symbolic links under {path} (not there yet)"
    links = find_links(path, budget)
    cut = "" if links.complete else f" (looked for {budget:g}s, not everywhere)"
    if not links.count:
        return ("ok" if links.complete else "warn"), f"no symbolic links under {path}{cut}"
    shown = ", ".join(f"{printable(link.path, 120)} -> {printable(link.target, 120)}"
                      for link in links.found if link.leaves or not links.leaving)
    if links.leaving:
        return "FAIL", (f"{links.leaving} symbolic link(s) under {path} lead out of their device's folder: "
                        f"{shown}{cut}; a pass refuses to write through them (the device fails): remove them, "
                        "the next pass copies those folders from the devices again")
    return ("ok" if links.complete else "warn"), (f"{links.count} symbolic link(s) under {path}, each staying "
                                                  f"in its device's folder: {shown}{cut}")


def check_sandbox(config: Config, processes=execute, systemd: Path = Path("/run/systemd/system")) -> list:
    """Each destination the pass's sandbox would refuse (ProtectSystem=strict but its ReadWritePaths=),
    as systemd has loaded the unit; nothing to say without systemd."""
    if not systemd.is_dir():
        return []
    result = processes.run(("systemctl", "show", "-P", "ReadWritePaths", PASS_UNIT), timeout=15)
    if result.returncode != 0:
        return [("warn", f"cannot ask systemd which folders {PASS_UNIT} may write: {result.last_error_line}")]
    allowed = parse_paths(result.stdout)
    findings = []
    for kind in config.kinds():
        destination = config.destination(kind)
        problem = refusal(destination)
        real = Path(os.path.realpath(destination))
        if problem:
            findings.append(("FAIL", f"destination {destination}: {problem}"))
        elif not (covered(destination, allowed) or covered(real, [Path(os.path.realpath(a)) for a in allowed])):
            findings.append(("FAIL", f"destination {destination} is outside the backup pass's sandbox ({PASS_UNIT} "
                                     f"may write {' '.join(map(str, allowed)) or 'nothing'}): run "
                                     "'systemctl daemon-reload', which opens it to the pass (the package's "
                                     "generator reads backup.conf and ethoscope.conf)"))
        else:
            findings.append(("ok", f"destination {destination} is open to the backup pass's sandbox"))
    return findings


def check_device(config: Config, device, key: str) -> tuple:
    folders = " ".join(shlex.quote(config.remote_root(kind)) for kind in config.kinds())
    remote = f"for d in {folders}; do test -d \"$d\" -a -r \"$d\" -a -x \"$d\" || echo \"unreadable: $d\"; done"
    argv = make_ssh_command(config, device, key) + (ssh_target(config, device), remote)
    result = execute.run(argv, timeout=config.ssh.connect_timeout + 15)
    if result.returncode == 0 and not result.stdout.strip():
        return "ok", f"{device.name} ({device.address}): SSH works, host key known, folders readable"
    if result.returncode == 0:
        return "FAIL", f"{device.name}: {escape.terminal(result.stdout.strip(), 300)} on the device"
    label = classify_exit(result.returncode, result.stderr).label
    hints = {
        "host key changed": forget_hint(device.name),
        "ssh authentication refused": "install the node's public key in ~ethoscope/.ssh/authorized_keys on it",
    }
    hint = hints.get(label, "is it switched on and on the network?")
    return "FAIL", f"{device.name} ({device.address}): {label} ({escape.terminal(result.last_error_line, 120)}); {hint}"


def run_checks(config: Config, out=print, key_finding: tuple | None = None) -> int:
    """`key_finding`: the key as root saw it before handing the check over to the service user
    (whose private copy of the key says nothing about the original's owner and mode)."""
    findings = [key_finding or check_key(credential_key(config))]
    known = config.ssh.known_hosts.parent
    findings.append(("ok", f"known hosts {config.ssh.known_hosts}") if os.access(known, os.W_OK) or not known.exists()
                    else ("FAIL", f"known hosts folder {known} is not writable"))
    for kind in config.kinds():
        findings.append(check_destination(config.destination(kind), config.transfer.min_free))
        findings.append(check_links(config.destination(kind)))
    findings += check_sandbox(config)
    findings += offsite_findings(config, time.time(), threading.Event())
    for level, text in findings:
        out(f"{level:5} {text}")
    try:
        found = discover(config, identities(load_history(config.history_file)))
    except DiscoveryError as error:
        out(f"FAIL  discovery: {error}")
        return EXIT_FAILED
    out(f"ok    discovery: {len(found.devices)} device(s) from {found.source}")
    for warning in found.warnings:
        out(f"warn  discovery: {warning}")
    for token in found.missing:          # -e asked for a device discovery does not list: say so, fail
        name = f"ETHOSCOPE_{token:03d}" if isinstance(token, int) else token
        findings.append(("FAIL", f"{name}: not found ({found.source} lists no such device; is it switched on, and "
                                 f"listed by the node server or under [devices]?)"))
        out(f"FAIL  {findings[-1][1]}")
    for held in found.held:
        findings.append(("FAIL", held))
        out(f"FAIL  {held}")
    key = str(credential_key(config))
    for device in found.devices:
        level, text = check_device(config, device, key)
        findings.append((level, text))
        out(f"{level:5} {text}")
    return EXIT_FAILED if any(level == "FAIL" for level, _ in findings) else EXIT_OK


def forget_host(config: Config, name: str, out=print, wait: bool = False) -> int:
    """Remove every known_hosts entry recorded for one device (all its aliases)."""
    try:
        (number,) = parse_selection(name)
    except (DeviceError, ValueError):
        out(f"forget-host: {name!r} is not one device name or number")
        return EXIT_USAGE
    if not isinstance(number, int):
        out("forget-host: give the device's name or number, not its machine id")
        return EXIT_USAGE
    prefix = f"ETHOSCOPE_{number:03d}"
    try:
        waiting = (lambda pid: out(f"forget-host: waiting for the running pass (pid {pid}) to end")) if wait else None
        with pass_lock(config.lock_file, wait=waiting):    # the history is the pass's: never write it beside one
            removed = remove_host_keys(config.ssh.known_hosts, prefix)
            history = load_history(config.history_file)
            unpinned = unpin(history, prefix)
            if unpinned:
                save_history(config.history_file, history)
    except Busy as busy:
        out(f"forget-host: {busy}; try again when it has ended, or add --wait")
        return EXIT_BUSY
    if not removed and not unpinned:
        out(f"no host key recorded for {prefix} in {config.ssh.known_hosts}")
        return EXIT_OK
    out(f"forgot {removed} host key(s) of {prefix} and its machine id; the next pass records its new key")
    return EXIT_OK
