"""What one rsync of a device's tree reported, bounded by what the node keeps of a device.

Every file rsync names goes through :meth:`Listing.add`: a path over the inventory's PATH_MAX, or
past its FILES_MAX files, is only counted (:mod:`ethoscope_rsync.state.inventory`), so a device
that lists a million files or kilobyte-long names costs the pass a bounded amount of memory; the
job names such a device in a warning.
"""
from __future__ import annotations

import dataclasses

from ethoscope_rsync.state import events
from ethoscope_rsync.state.inventory import FILES_MAX, fits


@dataclasses.dataclass
class Listing:
    """What one rsync reported (paths relative to the tree's root on the node): the device's
    folder's files (path -> size, bounded), the errors of files it could not copy, and how many
    files (and bytes) were only counted."""
    files: dict = dataclasses.field(default_factory=dict)
    problems: list = dataclasses.field(default_factory=list)
    untracked: int = 0
    untracked_bytes: int = 0

    def add(self, path: str, size: int) -> None:
        if path in self.files or (fits(path) and len(self.files) < FILES_MAX):
            self.files[path] = size
        else:
            self.untracked += 1
            self.untracked_bytes += size

    def event(self, key: str, kind: str, more: dict | None = None) -> events.Listed:
        """The tree as it is on the node (with `more`: the databases, copied apart)."""
        files = {**self.files, **more} if more else self.files
        return events.Listed(key, kind, tuple(files.items()), (self.untracked, self.untracked_bytes))
