"""The status model: what a pass knows about itself and its devices, as typed records.

Two documents, both written only by :class:`ethoscope_rsync.state.store.StatusStore`:

* the **status** of the current or last pass (``status.json`` in /run), here: a :class:`Pass` and
  one :class:`DeviceRun` per device of that pass, rewritten about once a second while it runs;
* the **history** (``history.json`` in /var/lib), in :mod:`ethoscope_rsync.state.history`: one
  ``DeviceHistory`` per device ever backed up (last success and error, the last passes, the node's
  copy of its files), rewritten once a pass.

Numbers are stored as numbers (epoch seconds, bytes); only :mod:`ethoscope_rsync.render.upstream` formats
them into the upstream tool's shapes. ``from_json`` of every record accepts anything (a file from an
older version, a hand-edited one) and keeps what has the right type, so readers never crash on it.
"""
from __future__ import annotations

import dataclasses
import math

SCHEMA = 2
DAY = 86400.0            # seconds
KINDS = ("results", "videos")
PASSES_KEPT = 30          # per device, for the status page's strip
FILES_LISTED = 500        # per device and kind: the newest files named in the status
DAMAGED_LISTED = 50       # per device: the damaged files named by the last verification


def device_key(machine_id: str, name: str) -> str:
    """The key of a device in the status, history and URLs: its machine id, else its name."""
    return machine_id or name


def is_stale(last_success: float, now: float, stale_after: float) -> bool:
    """A device is stale when its last success is older than ``stale_after`` seconds, or never was."""
    return last_success <= 0 or now - last_success > stale_after


def lag(protected_up_to: float, now: float) -> float | None:
    """A device's data age: how old the oldest device data that may not be on the node yet can be, the
    time since the moment up to which its data is known to be on the node (None: never copied whole)."""
    return max(0.0, now - protected_up_to) if protected_up_to > 0 else None


def fields_of(record) -> dict:
    """A record's fields as they are, for JSON: unlike dataclasses.asdict, nothing is deep-copied (a
    device's inventory holds thousands of files, written every pass); nested records are the caller's."""
    return {field.name: getattr(record, field.name) for field in dataclasses.fields(record)}


# ------------------------------------------------------------------ tolerant readers

def number(value, default=0):
    """An int or float from `value` (finite), else `default`; bools are not numbers here."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return default
    return value if math.isfinite(value) else default


def text(value, default="") -> str:
    return value if isinstance(value, str) else default


def mapping(value) -> dict:
    return value if isinstance(value, dict) else {}


def sequence(value) -> list:
    return value if isinstance(value, list) else []


# ------------------------------------------------------------------ the current pass

@dataclasses.dataclass
class FileCopy:
    """One file received from a device in this pass. `path` is relative to the kind's root."""
    path: str
    size: int
    transferred: int
    start: float
    end: float


def files_to_json(files) -> dict:
    """FileCopies grouped by folder (a device's chunks share long folder names):
    ``{folder: [[name, size, transferred, start, seconds], ...]}``."""
    grouped: dict = {}
    for f in files:
        folder, _, name = f.path.rpartition("/")
        grouped.setdefault(folder, []).append([name, f.size, f.transferred, round(f.start, 2),
                                               round(f.end - f.start, 3)])
    return grouped


def files_from_json(data) -> dict:
    files = {}
    for folder, items in mapping(data).items():
        for item in sequence(items):
            item = sequence(item)
            if len(item) != 5 or not isinstance(item[0], str) or not item[0]:
                continue
            path = f"{folder}/{item[0]}" if folder else item[0]
            start = number(item[3])
            files[path] = FileCopy(path, int(number(item[1])), int(number(item[2])), start, start + number(item[4]))
    return files


@dataclasses.dataclass
class Transfer:
    """One tree (`kind`: results or videos) of one device in this pass."""
    files: dict = dataclasses.field(default_factory=dict)    # path -> FileCopy, the newest FILES_LISTED
    files_received: int = 0
    bytes_received: int = 0         # sizes of the files received
    bytes_sent: int = 0             # what went over the wire for them
    ended: float = 0.0
    exit_code: int = -1             # -1: not ended
    ok: bool = False
    message: str = ""
    percent: float = 0.0            # this tree's progress in the current attempt, 0-100 (100: listed)
    progress_bytes: int = 0         # bytes its current rsync has moved so far
    rate: float = 0.0               # bytes per second of its current rsync

    def to_json(self) -> dict:
        return dict(fields_of(self), files=files_to_json(self.files.values()))

    @classmethod
    def from_json(cls, data):
        data = mapping(data)
        return cls(files=files_from_json(data.get("files")),
                   files_received=int(number(data.get("files_received"))),
                   bytes_received=int(number(data.get("bytes_received"))),
                   bytes_sent=int(number(data.get("bytes_sent"))),
                   ended=number(data.get("ended")), exit_code=int(number(data.get("exit_code"), -1)),
                   ok=data.get("ok") is True, message=text(data.get("message")),
                   percent=number(data.get("percent")), progress_bytes=int(number(data.get("progress_bytes"))),
                   rate=number(data.get("rate")))


VERIFIED = ("ok", "unchanged")     # verdicts of a database whose copy on the node is the device's, checked


@dataclasses.dataclass
class DatabaseVerdict:
    """What became of one database copy (path relative to the results root)."""
    verdict: str            # "ok", "unchanged", "kept previous copy"
    rows: int
    checked: float
    message: str

    def to_json(self) -> list:
        return [self.verdict, self.rows, round(self.checked, 3), self.message]

    @classmethod
    def from_json(cls, data):
        data = sequence(data)
        if len(data) != 4:
            return None
        return cls(text(data[0]), int(number(data[1])), number(data[2]), text(data[3]))


@dataclasses.dataclass
class Progress:
    percent: float = 0.0       # of the whole device job, 0-100
    kind: str = ""             # tree that reported last (both may be copied at once)
    bytes: int = 0             # bytes of the trees' current transfers so far
    rate: float = 0.0          # bytes per second, of the trees being copied together
    current_file: str = ""
    message: str = ""

    @classmethod
    def from_json(cls, data):
        data = mapping(data)
        return cls(percent=number(data.get("percent")), kind=text(data.get("kind")),
                   bytes=int(number(data.get("bytes"))), rate=number(data.get("rate")),
                   current_file=text(data.get("current_file")), message=text(data.get("message")))


QUEUED, RUNNING, COMPLETED, ERROR = "queued", "running", "completed", "error"
KILLED_MESSAGE = "the previous pass ended before this device finished"
PASS_GONE_MESSAGE = "the pass ended without writing its end (killed, or out of memory)"


@dataclasses.dataclass
class DeviceRun:
    """A device in the current (or last) pass."""
    id: str
    name: str
    address: str
    state: str = QUEUED
    started: float = 0.0
    ended: float = 0.0
    attempts: int = 0
    progress: Progress = dataclasses.field(default_factory=Progress)
    transfers: dict = dataclasses.field(default_factory=dict)     # kind -> Transfer
    databases: dict = dataclasses.field(default_factory=dict)     # path -> DatabaseVerdict
    error: str = ""
    warnings: list = dataclasses.field(default_factory=list)      # said once in this pass
    ciphers: str = ""               # the ssh ciphers offered, in order ("": ssh's own default)
    cipher_reason: str = ""         # why those

    @property
    def key(self) -> str:
        return device_key(self.id, self.name)

    @property
    def processing(self) -> bool:
        return self.state == RUNNING

    @property
    def cut_short(self) -> bool:
        """Started and not finished: a failure of its pass if that pass is gone."""
        return self.state in (QUEUED, RUNNING) and self.started > 0

    def to_json(self) -> dict:
        return dict(fields_of(self), progress=fields_of(self.progress),
                    transfers={kind: t.to_json() for kind, t in self.transfers.items()},
                    databases={path: v.to_json() for path, v in self.databases.items()})

    @classmethod
    def from_json(cls, data):
        data = mapping(data)
        databases = {str(p): DatabaseVerdict.from_json(v) for p, v in mapping(data.get("databases")).items()}
        return cls(id=text(data.get("id")), name=text(data.get("name")), address=text(data.get("address")),
                   state=text(data.get("state"), QUEUED), started=number(data.get("started")),
                   ended=number(data.get("ended")), attempts=int(number(data.get("attempts"))),
                   progress=Progress.from_json(data.get("progress")),
                   transfers={k: Transfer.from_json(v) for k, v in mapping(data.get("transfers")).items()
                              if k in KINDS},
                   databases={p: v for p, v in databases.items() if v is not None},
                   error=text(data.get("error")),
                   warnings=[w for w in sequence(data.get("warnings")) if isinstance(w, str)],
                   ciphers=text(data.get("ciphers")), cipher_reason=text(data.get("cipher_reason")))


@dataclasses.dataclass
class Pass:
    """One backup pass."""
    pid: int = 0
    started: float = 0.0
    ended: float = 0.0
    outcome: str = ""         # "running", "success", "failed", "interrupted", "nothing to do", ...
    message: str = ""
    what: str = "unified"
    devices_total: int = 0
    devices_done: int = 0
    devices_failed: int = 0
    bytes_received: int = 0
    files_received: int = 0

    @property
    def active(self) -> bool:
        return self.outcome == "running"

    def to_json(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data):
        data = mapping(data)
        defaults = cls()
        values: dict = {}
        for field in dataclasses.fields(cls):
            default = getattr(defaults, field.name)
            value = data.get(field.name)
            if isinstance(default, str):
                values[field.name] = text(value, default)
            else:
                values[field.name] = type(default)(number(value, default))
        return cls(**values)


@dataclasses.dataclass
class Status:
    """The status document: the current or last pass and its devices."""
    run: Pass = dataclasses.field(default_factory=Pass)
    devices: dict = dataclasses.field(default_factory=dict)       # key -> DeviceRun
    generated: float = 0.0

    def to_json(self) -> dict:
        return {"schema": SCHEMA, "generated": round(self.generated, 3), "run": self.run.to_json(),
                "devices": {key: device.to_json() for key, device in self.devices.items()}}

    @classmethod
    def from_json(cls, data):
        data = mapping(data)
        if data.get("schema") != SCHEMA:
            return cls()
        devices = {str(k): DeviceRun.from_json(v) for k, v in mapping(data.get("devices")).items()
                   if isinstance(v, dict)}
        return cls(run=Pass.from_json(data.get("run")), devices=devices, generated=number(data.get("generated")))

    def interrupted(self) -> "Status":
        """This status as it stands once its pass's process is gone without writing its end (killed,
        out of memory): the pass interrupted, its started devices failed, as the next pass records them."""
        at = self.generated or self.run.started
        run = dataclasses.replace(self.run, outcome="interrupted", message=PASS_GONE_MESSAGE, ended=at)
        devices = {key: dataclasses.replace(d, state=ERROR, error=KILLED_MESSAGE, ended=at) if d.cut_short else d
                   for key, d in self.devices.items()}
        return Status(run=run, devices=devices, generated=self.generated)


def settled(doc, alive) -> dict | None:
    """The status document `doc` as it stands: when it says a pass is running whose process
    `alive(pid)` says is gone, :meth:`Status.interrupted` of it (else `doc` itself)."""
    run = Pass.from_json(mapping(doc).get("run"))
    if doc is None or not run.active or alive(run.pid):
        return doc
    return Status.from_json(doc).interrupted().to_json()
