"""Every write of a pass stays in its device's own folder, whatever symbolic links the node holds.

A device is pulled into ``<destination>/<machine id>/`` only, and rsync never brings a link from it
(``--no-links``). But the node's archive may hold links of its own: the upstream tool ran ``rsync -a``
as root and kept the devices' links, and an operator may have made some. A write that follows
such a link — ``<id A>/x`` leading into ``<id B>/`` — would land in another device's folder (a
database recovered into B's place, B's partial files removed). So every path the pass writes is
resolved first (:func:`os.path.realpath`, links followed as the kernel would) and must stay inside
its device's area:

* the trees and the database recovery: ``<destination>/<machine id>/``;
* the raw database mirror: ``<results>/.ethoscope-backup/raw/<device>/<machine id>/``;
* versions kept by ``--safe``: ``<destination>/.ethoscope-backup/replaced/<stamp>/<machine id>/``.

A device folder may itself be a link (to another disk): it is the device's area wherever it leads,
as long as that is neither inside nor above a destination (a link from A's folder to B's is not).
Only root and the service user can create links under the destinations and neither races the pass
(the device cannot: it sends no links), so checking right before writing is enough.

:func:`find_links` lists the links under a destination for ``ethoscope-backup check``.
"""
from __future__ import annotations

import dataclasses
import os
import time
from pathlib import Path

from ethoscope_rsync.system.logs import printable
from ethoscope_rsync.backup.rsync import HIDDEN, raw_root

LINKS_NAMED = 20          # links `check` names (all are counted)


def _real(path: Path | str) -> str:
    return os.path.realpath(path)


def _within(real: str, home: str) -> bool:
    return real == home or real.startswith(home.rstrip(os.sep) + os.sep)


def escape(base: Path, target: Path) -> str:
    """'' when `target` resolves inside `base` (or is it), else one line saying where it leads."""
    real, home = _real(target), _real(base)
    if _within(real, home):
        return ""
    return (f"{printable(target, 300)} leads to {printable(real, 300)}, outside {printable(base, 300)}: "
            f"a symbolic link on the node; not written (remove it, see ethoscope-backup check)")


def linked(base: Path, below: Path) -> str:
    """'' when no symbolic link lies between `base` and `below` (a folder of ours under it, existing
    or not), else one line naming where it leads instead."""
    real, expected = _real(below), os.path.join(_real(base), os.path.relpath(below, base))
    if real == os.path.normpath(expected):
        return ""
    return (f"{printable(below, 300)} leads to {printable(real, 300)}: a symbolic link under "
            f"{printable(base, 300)}; nothing written there (remove it, see ethoscope-backup check)")


def device_folder_problem(folder: Path, destinations) -> str:
    """'' when the device folder `folder` (``<destination>/<machine id>``) is the device's own: a
    real folder, missing, or a link leading elsewhere than into or above a destination; else why not."""
    if not folder.is_symlink():
        return ""
    real = _real(folder)
    for destination in destinations:
        home = _real(destination)
        if _within(real, home) or _within(home, real):
            return (f"the device folder {printable(folder, 300)} is a symbolic link to {printable(real, 300)}, "
                    f"inside or above the destination {printable(destination, 300)}: nothing written "
                    f"(a device folder may only lead to a folder of its own, e.g. on another disk)")
    return ""


@dataclasses.dataclass(frozen=True)
class Link:
    path: str             # relative to the destination
    target: str           # as the link says
    leaves: bool          # resolves outside its device folder (the top-level entry it is under)


@dataclasses.dataclass(frozen=True)
class Links:
    found: tuple          # Link, at most LINKS_NAMED
    count: int            # all links seen
    leaving: int          # of those, links that resolve outside their device folder
    complete: bool        # False: the walk was cut by its time budget


def find_links(destination: Path, budget: float, clock=time.monotonic) -> Links:
    """The symbolic links under `destination` (not followed), within `budget` seconds."""
    deadline = clock() + budget
    found: list = []
    count = leaving = 0
    stack = [destination]
    while stack:
        if clock() > deadline:
            return Links(tuple(found), count, leaving, False)
        try:
            with os.scandir(stack.pop()) as entries:
                for entry in entries:
                    if entry.is_symlink():
                        relative = os.path.relpath(entry.path, destination)
                        top = relative.split(os.sep, 1)[0]
                        leaves = not _within(_real(entry.path), _real(destination / top)) if os.sep in relative \
                            else bool(device_folder_problem(Path(entry.path), (destination,)))
                        count += 1
                        leaving += leaves
                        if len(found) < LINKS_NAMED:
                            try:
                                target = os.readlink(entry.path)
                            except OSError:
                                target = "?"
                            found.append(Link(relative, target, leaves))
                    elif entry.is_dir(follow_symlinks=False):
                        stack.append(Path(entry.path))
        except OSError:
            continue
    return Links(tuple(found), count, leaving, True)


def areas_problem(config, device, folder: str, stamp: str) -> str:
    """'' when every area the device's job writes in is its own (see the module's docstring), else
    the first problem: a device folder leading into or above a destination, a link on the way to
    its raw mirror or to its --safe versions."""
    destinations = (config.paths.results, config.paths.videos)
    for kind in config.kinds():
        destination = config.destination(kind)
        problem = device_folder_problem(destination / folder, destinations)
        if not problem and config.transfer.safe and stamp:
            problem = linked(destination, destination / HIDDEN / "replaced" / stamp / folder)
        if problem:
            return problem
    if "results" in config.kinds() and config.transfer.live_databases:
        return linked(config.paths.results, raw_root(config, device) / folder)
    return ""
