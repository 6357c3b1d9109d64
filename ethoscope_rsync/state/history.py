"""The history: what survives a reboot of each device ever backed up, and of the node's disks.

``history.json`` in /var/lib, written by :class:`ethoscope_rsync.state.store.StatusStore` once a pass:
one :class:`DeviceHistory` per device (last success and error, the last passes, the node's
:class:`Inventory` of its files, its databases' last recoveries, its pinned identity), disk usage
samples, the last verification. Tolerant ``from_json`` as in :mod:`ethoscope_rsync.state.model`.
"""
from __future__ import annotations

import dataclasses
import heapq

from ethoscope_rsync.state.offsite import OffsiteState
from ethoscope_rsync.state.model import (DAMAGED_LISTED, FILES_LISTED, KINDS, PASSES_KEPT, SCHEMA, fields_of,
                                         mapping, number, sequence, text)


def last_seen(entry) -> float:
    """When a device (a DeviceHistory) last ended a job, successful or not (0: never)."""
    return max(entry.last_success, entry.last_error_time, entry.passes[-1].ended if entry.passes else 0.0)


DATABASES_LISTED = 500     # per device: the newest databases its summary names (/status lists them)
NEWEST_KEPT = 50           # per tree: the newest files its summary names (/status/<device> reads more
#                            from the inventory database)
DATABASE_SUFFIX = ".db"


def listed(files: dict) -> dict:
    """What a tree's summary names of `files` (path -> size): its NEWEST_KEPT newest files and its
    DATABASES_LISTED newest databases (ethoscope paths start with the experiment's date and time)."""
    if len(files) <= NEWEST_KEPT:
        return dict(files)
    chosen = heapq.nlargest(NEWEST_KEPT, files)
    chosen += heapq.nlargest(DATABASES_LISTED, (p for p in files if p.endswith(DATABASE_SUFFIX)))
    return {path: files[path] for path in sorted(chosen)}


@dataclasses.dataclass
class Inventory:
    """The node's copy of one device's tree, kept up to date from rsync's listing of every pass:
    its totals and what the status names (:func:`listed`); every file of the last listing is in
    the inventory database (:mod:`ethoscope_rsync.state.inventory`), not here.

    Files the device deleted since stay on the node (nothing is ever deleted there) and are counted
    in `retired_files`/`retired_bytes`; `untracked_files` of the last listing were only counted (too
    long a path, too many files). Nothing walks the node's tree to keep these figures.
    """
    present: dict = dataclasses.field(default_factory=dict)      # path -> size, the files listed()
    retired_files: int = 0
    retired_bytes: int = 0
    present_files: int | None = None      # the last listing's (None: those of `present`)
    present_bytes: int | None = None
    untracked_files: int = 0
    legacy: dict | None = dataclasses.field(default=None, repr=False, compare=False)   # an old history's
    #                                     whole tree, until the pass moves it to the inventory database

    def __post_init__(self):
        if self.present_files is None:
            self.present_files = len(self.present)
        if self.present_bytes is None:
            self.present_bytes = sum(self.present.values())

    @property
    def files(self) -> int:
        assert self.present_files is not None       # __post_init__ sets it
        return self.present_files + self.retired_files

    @property
    def bytes(self) -> int:
        assert self.present_bytes is not None       # __post_init__ sets it
        return self.present_bytes + self.retired_bytes

    @classmethod
    def of(cls, files: dict, untracked: tuple, retired: tuple) -> "Inventory":
        """A tree's summary after a listing: `files` kept one by one, `untracked` (files, bytes) only
        counted, `retired` (files, bytes) in all that the device no longer has."""
        return cls(present=listed(files), retired_files=retired[0], retired_bytes=retired[1],
                   present_files=len(files) + untracked[0],
                   present_bytes=sum(files.values()) + untracked[1], untracked_files=untracked[0])

    def newest(self, count: int = FILES_LISTED) -> dict:
        """The `count` newest files (ethoscope paths start with the experiment's date and time)."""
        if len(self.present) <= count:
            return dict(self.present)
        return {path: self.present[path] for path in sorted(self.present)[-count:]}

    def to_json(self) -> dict:
        return {name: value for name, value in fields_of(self).items() if name != "legacy"}

    @classmethod
    def from_json(cls, data):
        """Also reads an inventory of the histories before the inventory database (its whole tree
        in `present`, no `present_files`): kept in `legacy` for the pass to move."""
        data = mapping(data)
        present = {str(p): int(number(s)) for p, s in mapping(data.get("present")).items()}
        retired: dict = dict(retired_files=int(number(data.get("retired_files"))),
                             retired_bytes=int(number(data.get("retired_bytes"))))
        if "present_files" not in data:
            return cls(present=listed(present), present_files=len(present), present_bytes=sum(present.values()),
                       legacy=present, **retired)
        if len(present) > FILES_LISTED + DATABASES_LISTED:   # (a pass writes fewer; a reader adds FILES_LISTED)
            present = listed(present)
        return cls(present=present, present_files=int(number(data.get("present_files"))),
                   present_bytes=int(number(data.get("present_bytes"))),
                   untracked_files=int(number(data.get("untracked_files"))), **retired)


@dataclasses.dataclass
class PassSummary:
    """One pass of one device, for the strip of the last passes."""
    ended: float
    outcome: str           # COMPLETED, ERROR, or "nothing" (completed, nothing copied)
    bytes: int

    def to_json(self) -> list:
        return [round(self.ended, 3), self.outcome, self.bytes]

    @classmethod
    def from_json(cls, data):
        data = sequence(data)
        if len(data) != 3:
            return None
        return cls(number(data[0]), text(data[1]), int(number(data[2])))


@dataclasses.dataclass
class DatabaseRecord:
    """The last recovery of one database into place. `signature` is what the device held then
    (sizes and mtimes of its .db and -wal); a database is copied and recovered again only when
    the device's signature changed or this recovery was not verified (`ok`)."""
    signature: list
    ok: bool
    rows: int
    message: str
    checked: float

    def to_json(self) -> list:
        return [self.signature, self.ok, self.rows, self.message, round(self.checked, 3)]

    @classmethod
    def from_json(cls, data):
        data = sequence(data)
        if len(data) != 5:
            return None
        return cls(sequence(data[0]), data[1] is True, int(number(data[2])), text(data[3]), number(data[4]))


@dataclasses.dataclass
class DeviceHistory:
    id: str = ""
    name: str = ""
    address: str = ""
    last_success: float = 0.0
    protected_up_to: float = 0.0      # start of the last copy that took everything (its databases verified)
    last_outcome: str = ""
    last_error: str = ""
    last_error_time: float = 0.0
    last_bytes: int = 0
    count: int = 0                    # passes that started this device
    pinned: bool = False              # answered with the host key of its name: its name and id are its own
    aes: bool | None = None           # its CPU has AES instructions (None: not known)
    passes: list = dataclasses.field(default_factory=list)          # PassSummary, oldest first
    inventory: dict = dataclasses.field(default_factory=dict)       # kind -> Inventory
    databases: dict = dataclasses.field(default_factory=dict)       # path -> DatabaseRecord

    def to_json(self) -> dict:
        return dict(fields_of(self), passes=[p.to_json() for p in self.passes],
                    inventory={kind: inv.to_json() for kind, inv in self.inventory.items()},
                    databases={path: record.to_json() for path, record in self.databases.items()})

    @classmethod
    def from_json(cls, data):
        data = mapping(data)
        passes = (PassSummary.from_json(p) for p in sequence(data.get("passes")))
        return cls(id=text(data.get("id")), name=text(data.get("name")), address=text(data.get("address")),
                   last_success=number(data.get("last_success")),
                   protected_up_to=number(data.get("protected_up_to")), last_outcome=text(data.get("last_outcome")),
                   last_error=text(data.get("last_error")), last_error_time=number(data.get("last_error_time")),
                   last_bytes=int(number(data.get("last_bytes"))), count=int(number(data.get("count"))),
                   pinned=data.get("pinned") is True,
                   aes=data.get("aes") if isinstance(data.get("aes"), bool) else None,
                   passes=[p for p in passes if p is not None][-PASSES_KEPT:],
                   inventory={k: Inventory.from_json(v) for k, v in mapping(data.get("inventory")).items()
                              if k in KINDS},
                   databases={str(p): r for p, r in ((p, DatabaseRecord.from_json(v))
                                                     for p, v in mapping(data.get("databases")).items())
                              if r is not None})


@dataclasses.dataclass
class Usage:
    """One destination's file system at the end of a pass. `used` is what our copies take there:
    the devices' inventories of that tree plus, for results, the raw database mirror (`raw`, part
    of `used`); `fs` tells file systems apart (st_dev); `growth`: bytes a day that file system
    fills, estimated when the sample was taken (:mod:`ethoscope_rsync.state.forecast`), None if unknown."""
    free: int
    total: int
    used: int
    raw: int = 0
    fs: int = 0
    growth: float | None = None

    def to_json(self) -> dict:
        return {"free": self.free, "total": self.total, "used": self.used, "raw": self.raw, "fs": self.fs,
                "growth": None if self.growth is None else round(self.growth, 1)}

    @classmethod
    def from_json(cls, data):
        """An object; or the list [free, total, used, raw, fs, growth] histories before 0.3.0 hold."""
        if type(data) is list and len(data) == 6:
            data = dict(zip(("free", "total", "used", "raw", "fs", "growth"), data))
        if type(data) is not dict or not {"free", "total", "used"} <= data.keys():
            return None
        sizes = [data.get(name, 0) for name in ("free", "total", "used", "raw", "fs")]
        if not all(type(size) is int for size in sizes):        # hand-edited
            sizes = [int(number(size)) for size in sizes]
        free, total, used, raw, fs = sizes
        growth = data.get("growth")
        return cls(free, total, used, raw, fs, None if growth is None else number(growth))


@dataclasses.dataclass
class DiskSample:
    """The destinations at the end of one pass (kind -> Usage)."""
    at: float
    usage: dict

    def to_json(self) -> dict:
        return {"at": round(self.at, 1), "usage": {kind: u.to_json() for kind, u in self.usage.items()}}

    @classmethod
    def from_json(cls, data):
        """An object; or the list [at, usage] histories before 0.3.0 hold."""
        if type(data) is list and len(data) == 2:
            data = {"at": data[0], "usage": data[1]}
        if type(data) is not dict or number(data.get("at")) <= 0:
            return None
        usage = {}
        for kind, value in mapping(data.get("usage")).items():
            parsed = Usage.from_json(value) if kind in KINDS else None
            if parsed is not None:
                usage[kind] = parsed
        return cls(number(data["at"]), usage)


@dataclasses.dataclass
class Verification:
    """The last `ethoscope-backup verify` of one device's files on the node."""
    at: float = 0.0
    files: int = 0
    bytes: int = 0
    damaged: list = dataclasses.field(default_factory=list)     # [path, reason], the first DAMAGED_LISTED
    damaged_count: int = 0
    complete: bool = True          # False: stopped (signal, time) before every file was checked
    cursor: str = ""               # the last file checked when not complete: the next verify goes on after it

    def to_json(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data):
        data = mapping(data)
        damaged = [[text(d[0]), text(d[1])] for d in map(sequence, sequence(data.get("damaged")))
                   if len(d) == 2][:DAMAGED_LISTED]
        return cls(at=number(data.get("at")), files=int(number(data.get("files"))),
                   bytes=int(number(data.get("bytes"))), damaged=damaged,
                   damaged_count=int(number(data.get("damaged_count"), len(damaged))),
                   complete=data.get("complete") is not False, cursor=text(data.get("cursor")))


@dataclasses.dataclass
class History:
    last_backup: float = 0.0          # end of the last pass that completed
    devices: dict = dataclasses.field(default_factory=dict)         # key -> DeviceHistory
    destinations: dict = dataclasses.field(default_factory=dict)    # kind -> the node's folder
    disk: list = dataclasses.field(default_factory=list)            # DiskSample, oldest first
    verification: dict = dataclasses.field(default_factory=dict)    # key -> Verification (copy of verify's)
    retired: dict = dataclasses.field(default_factory=dict)         # machine id -> name: pins of devices
    #                                   no longer published (not seen for [status] retire_after)
    good_passes: int = 0              # passes that backed up every device (what [offsite] after_passes counts)
    offsite: OffsiteState | None = None    # the second copy: offsite.json, attached by readers, never written here

    def to_json(self) -> dict:
        return {"schema": SCHEMA, "last_backup": self.last_backup, "good_passes": self.good_passes,
                "destinations": self.destinations,
                "devices": {key: device.to_json() for key, device in self.devices.items()},
                "disk": [sample.to_json() for sample in self.disk],
                "verification": {key: v.to_json() for key, v in self.verification.items()},
                "retired": dict(self.retired)}

    @classmethod
    def from_json(cls, data):
        """Also reads the first version's history (same field names, no passes or inventory)."""
        data = mapping(data)
        devices = {str(k): DeviceHistory.from_json(v) for k, v in mapping(data.get("devices")).items()
                   if isinstance(v, dict)}
        destinations = {k: v for k, v in mapping(data.get("destinations")).items()
                        if k in KINDS and isinstance(v, str)}
        disk = (DiskSample.from_json(sample) for sample in sequence(data.get("disk")))
        verification = {str(k): Verification.from_json(v) for k, v in mapping(data.get("verification")).items()
                        if isinstance(v, dict)}
        retired = {str(k): v for k, v in mapping(data.get("retired")).items() if isinstance(v, str)}
        offsite = data.get("offsite")
        return cls(last_backup=number(data.get("last_backup")), devices=devices, destinations=destinations,
                   disk=[sample for sample in disk if sample is not None], verification=verification,
                   retired=retired, good_passes=int(number(data.get("good_passes"))),
                   offsite=OffsiteState.from_json(offsite) if isinstance(offsite, dict) else None)
