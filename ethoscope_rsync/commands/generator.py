"""``ethoscope-backup-generator``: the package's systemd generator (systemd.generator(7)).

systemd runs it at boot and at every ``systemctl daemon-reload`` with three output folders
(normal, early, late). It writes:

* a drop-in for ``ethoscope-backup.service`` (and the verification's mount dependencies) opening the
  pass's sandbox to the destinations configured in backup.conf or the node's ethoscope.conf
  (:func:`ethoscope_rsync.system.units.sandbox_dropins`), so that folders chosen in the node's web
  interface work without a hand-written drop-in;
* into the late folder (the lowest priority: an upstream unit file of the same name wins), a unit
  file for each switch name (:mod:`ethoscope_rsync.config.switches`), so that the names exist on a
  node that never had the upstream units;
* where no unit file of any switch name exists (the upstream tool was never installed) nor a mask,
  ``multi-user.target.wants/ethoscope_backup_unified.service``: backups are switched on at boot
  (``systemctl mask ethoscope_backup_unified`` keeps them off).

It never fails the boot: a bad configuration leaves the drop-in out (one line on stderr, which
systemd logs); the pass then reports it.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

from ethoscope_rsync.config.load import ConfigError, load_config
from ethoscope_rsync.config.switches import SWITCHES
from ethoscope_rsync.system.units import DROPIN_NAME, UNIT_FOLDERS, refusal, sandbox_dropins, switch_fragment

PROG = "ethoscope-backup-generator"
DEFAULT_ON = "ethoscope_backup_unified"


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


def generate(normal: Path, late: Path, unit_folders=UNIT_FOLDERS, config_path=None, err=sys.stderr) -> None:
    try:
        config = load_config(config_path)
        destinations = (config.paths.results, config.paths.videos)
        for destination in destinations:
            problem = refusal(destination)
            if problem:
                print(f"{PROG}: not opened to the backup pass: {problem}", file=err)
        for unit, text in sandbox_dropins(destinations, config.source).items():
            _write(normal / f"{unit}.d" / DROPIN_NAME, text)
    except ConfigError as error:
        print(f"{PROG}: configuration error, destinations left as shipped: {error}", file=err)
    existing = [name for name in SWITCHES
                if any(os.path.lexists(os.path.join(folder, name + ".service")) for folder in unit_folders)]
    for name in SWITCHES:
        _write(late / f"{name}.service", switch_fragment(name))
    if not existing:
        wants = late / "multi-user.target.wants"
        wants.mkdir(parents=True, exist_ok=True)
        os.symlink(f"../{DEFAULT_ON}.service", wants / f"{DEFAULT_ON}.service")


def main(argv: list) -> int:
    if len(argv) not in (1, 3):
        print(f"usage: {PROG} NORMAL_DIR [EARLY_DIR LATE_DIR]", file=sys.stderr)
        return 2
    normal = Path(argv[0])
    late = Path(argv[2]) if len(argv) == 3 else normal
    try:
        generate(normal, late)
    except OSError as error:       # an output folder systemd gave us is unwritable: say so, fail nothing
        print(f"{PROG}: {error.strerror or error}: {error.filename or ''}", file=sys.stderr)
    return 0
