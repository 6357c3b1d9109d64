"""``run --dry-run``: discover, then ask rsync what it would copy from each device. Changes nothing.

What it prints of a device's answers (file names, error lines) goes through
:func:`ethoscope_rsync.system.logs.printable`, as every log line does: a name cannot drive the terminal."""
from __future__ import annotations

from ethoscope_rsync.system import execute
from ethoscope_rsync.config.load import credential_key
from ethoscope_rsync.config.record import Config
from ethoscope_rsync.backup.discovery import DiscoveryError, discover
from ethoscope_rsync.backup.pins import admitted, identities
from ethoscope_rsync.state.store import load_history
from ethoscope_rsync.system.exits import EXIT_FAILED, EXIT_OK
from ethoscope_rsync.render.humanize import human_size
from ethoscope_rsync.system.logs import log, printable
from ethoscope_rsync.backup.probe import inside, make_probe_command, parse_probe
from ethoscope_rsync.backup.rsync import (classify_exit, informative_line, make_rsync_command,
                                          make_ssh_command, parse_file_line, ssh_target)


def _folder(config: Config, device, key: str, out) -> str:
    """The device's own folder (its machine id), asked of the device; "" (said with `out`) when it
    cannot be reached, has no valid machine id, or tells another than the one claimed for it (a
    pass would refuse it: see jobs)."""
    argv = make_probe_command(make_ssh_command(config, device, key), ssh_target(config, device),
                              config.paths.remote_results, config.paths.remote_videos)
    result = execute.run(argv, timeout=config.ssh.connect_timeout + config.transfer.io_timeout)
    if result.returncode != 0:
        out(f"{device.name}: cannot reach ({classify_exit(result.returncode, result.stderr).label}: "
            f"{printable(informative_line(result.stderr), 160)})")
        return ""
    told = parse_probe(result.stdout).machine_id
    if not told:
        out(f"{device.name}: no valid /etc/machine-id on the device: its own folder is unknown, nothing to preview")
    elif device.id and told != device.id:
        out(f"{device.name}: the device says its machine id is {told}, not {device.id}: a pass would not "
            f"back it up, nothing to preview")
        return ""
    return told


def preview_pass(config: Config, out=print) -> int:
    history = load_history(config.history_file)
    try:
        found = discover(config, identities(history))
    except DiscoveryError as error:
        log.error("discovery failed: %s", error)
        return EXIT_FAILED
    for warning in found.warnings:
        log.warning("discovery: %s", warning)
    devices, refused = admitted(found.devices, history)      # the identity checks of a pass
    out(f"{len(found.devices)} device(s) from {found.source}")
    for message in refused:
        out(f"refused, as a pass would: {message}")
    key = str(credential_key(config))
    failed = len(refused)
    for device in devices:
        folder = _folder(config, device, key, out)
        if not folder:
            failed += 1
            continue
        for kind in config.kinds():
            argv = make_rsync_command(config, device, kind, key=key, folder=folder, dry_run=True)
            result = execute.run(argv, timeout=config.transfer.device_timeout)
            files = [event for event in map(parse_file_line, result.stdout.splitlines())
                     if event is not None and event.is_file and event.itemize[0] in "<>"
                     and inside(folder, f"{folder}/{event.name}")]
            outcome = classify_exit(result.returncode, result.stderr)
            if not outcome.ok:
                failed += 1
                out(f"{device.name} {kind}: cannot list ({outcome.label}: "
                    f"{printable(informative_line(result.stderr), 160)})")
                continue
            out(f"{device.name} {kind}: {len(files)} file(s), {human_size(sum(f.length for f in files))} "
                f"would be copied to {config.destination(kind) / folder}")
            for event in files:
                out(f"  {folder}/{printable(event.name)} ({human_size(event.length)})")
    return EXIT_FAILED if failed else EXIT_OK
