"""The node's switches: the upstream units' names, and what each one switched on copies.

The upstream node turns its rsync backup on and off with ``systemctl start``/``stop`` of
``ethoscope_backup_unified`` (results and videos), ``ethoscope_backup_sqlite`` (results) and
``ethoscope_backup_video`` (videos). With this package each of those names is a switch unit
(``/usr/lib/systemd/system/NAME.service.d/zz-ethoscope-rsync.conf``, over the upstream unit
file where there is one, else over the generator's): while it is on, systemd keeps a folder of its
name in ``SWITCH_DIR`` (``RuntimeDirectory=``) and the backup timer running. A pass started with
``--switches SWITCH_DIR`` copies the trees of the switches that are on (of those configured).
"""
from __future__ import annotations

from pathlib import Path

SWITCH_DIR = Path("/run/ethoscope-backup-switch")
SWITCHES = {
    "ethoscope_backup_unified": ("results", "videos"),
    "ethoscope_backup_sqlite": ("results",),
    "ethoscope_backup_video": ("videos",),
}
_WHAT = {("results", "videos"): "unified", ("results",): "results", ("videos",): "videos", (): ""}


def switched_on(folder: Path) -> tuple:
    """The names of the switches that are on (their folders in `folder`); () when none is, or
    when there is no such folder (no systemd, or none was ever switched on)."""
    try:
        return tuple(sorted(entry.name for entry in folder.iterdir() if entry.name in SWITCHES))
    except OSError:
        return ()


def switched_what(what: str, names) -> str:
    """``[transfer] what`` (unified, results, videos) narrowed to the trees the switches `names`
    turn on: 'unified', 'results', 'videos', or '' when they have none of it. No switch on: `what`."""
    names = tuple(names)
    if not names:
        return what
    configured = {"unified": ("results", "videos"), "results": ("results",), "videos": ("videos",)}[what]
    on = {kind for name in names for kind in SWITCHES.get(name, ())}
    return _WHAT[tuple(kind for kind in configured if kind in on)]
