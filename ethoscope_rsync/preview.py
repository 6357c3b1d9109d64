"""``run --dry-run``: discover, then ask rsync what it would copy from each device. Changes nothing."""
from __future__ import annotations

from ethoscope_rsync import execute
from ethoscope_rsync.config import Config, credential_key
from ethoscope_rsync.discovery import DiscoveryError, discover
from ethoscope_rsync.logs import log
from ethoscope_rsync.rsync import classify_exit, make_rsync_command, parse_file_line
from ethoscope_rsync.exits import EXIT_FAILED, EXIT_OK
from ethoscope_rsync.humanize import human_size


def preview_pass(config: Config, out=print) -> int:
    try:
        found = discover(config)
    except DiscoveryError as error:
        log.error("discovery failed: %s", error)
        return EXIT_FAILED
    for warning in found.warnings:
        log.warning("discovery: %s", warning)
    out(f"{len(found.devices)} device(s) from {found.source}")
    failed = 0
    for device in found.devices:
        for kind in config.kinds():
            argv = make_rsync_command(config, device, kind, key=str(credential_key(config)), dry_run=True)
            files = []
            result = execute.run(argv, timeout=config.device_timeout)
            for line in result.stdout.splitlines():
                event = parse_file_line(line)
                if event is not None and event.is_file and event.itemize[0] in "<>":
                    files.append(event)
            outcome = classify_exit(result.returncode, result.stderr)
            if not outcome.ok:
                failed += 1
                out(f"{device.name} {kind}: cannot list ({outcome.label}: {result.last_error_line[:160]})")
                continue
            total = sum(f.length for f in files)
            out(f"{device.name} {kind}: {len(files)} file(s), {human_size(total)} would be copied "
                f"to {config.destination(kind)}")
            for event in files:
                out(f"  {event.name} ({human_size(event.length)})")
    return EXIT_FAILED if failed else EXIT_OK
