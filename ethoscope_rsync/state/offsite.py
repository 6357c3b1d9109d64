"""The second copy's state (``offsite.json`` in the state dir) and the databases it may send.

Written only by ``ethoscope-backup offsite`` (and by ``verify`` for its check of the repository),
under the offsite lock; read by the status service, ``ethoscope-backup status`` and the alerts,
which attach it to the history they read (:func:`attach`), so that every rendering finds it as
``History.offsite`` without the pass ever writing it. Tolerant ``from_json`` as everywhere in
:mod:`ethoscope_rsync.state.model`: a hand-edited or truncated file never breaks a reader.

The ledger (``offsite-ledger.json``) remembers the size and mtime of every database copy that was
verified on this node when the second copy saw it, so that a database stays "verified" after the
pass forgot its record (the device deleted it: the node's copy is the last one) or after a later
recovery of it failed (the node kept the verified copy).
"""
from __future__ import annotations

import dataclasses

from ethoscope_rsync.state.model import mapping, number, sequence, text

OK, FAILED, RUNNING, INTERRUPTED = "ok", "failed", "running", "interrupted"
HELD_LISTED = 20             # databases held back, named in the state
MAX_LEDGER = 1_000_000       # databases remembered (a lab makes a few thousand a year)
MAX_ID = 64                  # characters of a snapshot id (restic's are 64 hex)


def _hex(value, limit: int = MAX_ID) -> str:
    value = text(value)
    return value if len(value) <= limit and all(c in "0123456789abcdef" for c in value) else ""


@dataclasses.dataclass
class Snapshot:
    """The newest snapshot the second copy took."""
    id: str = ""                 # restic's short id
    time: float = 0.0            # when restic took it (epoch)
    files: int = 0               # files it holds
    bytes: int = 0               # bytes it holds
    added: int = 0               # bytes this snapshot added to the repository
    seconds: float = 0.0         # how long the upload took

    def to_json(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data):
        data = mapping(data)
        if not _hex(data.get("id")) or number(data.get("time")) <= 0:
            return None
        return cls(_hex(data.get("id")), number(data.get("time")), int(number(data.get("files"))),
                   int(number(data.get("bytes"))), int(number(data.get("added"))), number(data.get("seconds")))


@dataclasses.dataclass
class Check:
    """The last ``restic check`` of the repository by ``verify``."""
    at: float = 0.0
    share: str = ""              # "3/12": the part of the data read; "" the structure only
    ok: bool = True
    message: str = ""

    def to_json(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data):
        data = mapping(data)
        if number(data.get("at")) <= 0:
            return None
        return cls(number(data.get("at")), text(data.get("share"))[:20], data.get("ok") is not False,
                   text(data.get("message"))[:500])


@dataclasses.dataclass
class OffsiteState:
    repository: str = ""         # as configured, without a password (Repository.shown)
    pid: int = 0                 # the run in progress (outcome RUNNING)
    started: float = 0.0         # the last run that tried to send
    ended: float = 0.0
    outcome: str = ""            # OK, FAILED, RUNNING, INTERRUPTED; "" never ran
    problem: str = ""            # what kind of failure ("wrong password", "repository full", ...)
    message: str = ""            # one line: what happened
    failures: int = 0            # failed runs in a row
    since: float = 0.0           # first of those failures
    last: Snapshot | None = None           # the newest snapshot sent
    repository_bytes: int = 0    # what the repository stores (compressed, deduplicated); 0: not known
    held_back: int = 0           # databases not sent: never verified on this node
    held_examples: list = dataclasses.field(default_factory=list)
    good_passes: int = 0         # the history's count of good passes at the last snapshot
    pruned: float = 0.0          # the last prune
    forgot: float = 0.0          # the last retention (restic forget)
    forgotten: int = 0           # snapshots forgotten since the last prune (a prune frees nothing without)
    check: Check | None = None
    next_group: int = 1          # the part of the data the next check reads
    alert_after: float = 0.0     # days, as configured at the last run

    def to_json(self) -> dict:
        return dict(dataclasses.asdict(self), last=self.last.to_json() if self.last else None,
                    check=self.check.to_json() if self.check else None, schema=1)

    @classmethod
    def from_json(cls, data):
        data = mapping(data)
        return cls(repository=text(data.get("repository"))[:1000], pid=int(number(data.get("pid"))),
                   started=number(data.get("started")), ended=number(data.get("ended")),
                   outcome=text(data.get("outcome"))[:20], problem=text(data.get("problem"))[:60],
                   message=text(data.get("message"))[:500], failures=int(number(data.get("failures"))),
                   since=number(data.get("since")), last=Snapshot.from_json(data.get("last")),
                   repository_bytes=int(number(data.get("repository_bytes"))),
                   held_back=int(number(data.get("held_back"))),
                   held_examples=[text(p)[:500] for p in sequence(data.get("held_examples"))[:HELD_LISTED]],
                   good_passes=int(number(data.get("good_passes"))), pruned=number(data.get("pruned")),
                   forgot=number(data.get("forgot")), forgotten=int(number(data.get("forgotten"))),
                   check=Check.from_json(data.get("check")), next_group=max(1, int(number(data.get("next_group"), 1))),
                   alert_after=number(data.get("alert_after")))

    def age(self, now: float) -> float | None:
        """Seconds since the newest snapshot (the second copy's lag behind the node); None: none yet."""
        return max(0.0, now - self.last.time) if self.last else None

    def old(self, now: float) -> bool:
        """Older than [offsite] alert_after days (or none at all after a run), as configured then."""
        if self.alert_after <= 0 or not self.outcome:
            return False
        age = self.age(now)
        return age is None or age > self.alert_after * 86400.0


def settled(record: OffsiteState, alive) -> OffsiteState:
    """A run recorded as running whose process is gone (killed) is interrupted."""
    if record.outcome == RUNNING and not alive(record.pid):
        return dataclasses.replace(record, outcome=INTERRUPTED, message="the run was killed before its end")
    return record


def attach(history, offsite):
    """The history document (a dict or None) with the second copy's state beside it, for readers;
    None or a non-object `offsite` leaves it as it is."""
    if not isinstance(offsite, dict):
        return history
    return dict(history if isinstance(history, dict) else {}, offsite=offsite)


# ---------------------------------------------------------------- the ledger of verified databases

def ledger_from_json(data) -> dict:
    """offsite-ledger.json -> {path under the results destination: (size, mtime_ns)}."""
    out: dict = {}
    for path, value in mapping(mapping(data).get("databases")).items():
        value = sequence(value)
        if len(value) == 2 and all(type(v) is int for v in value) and len(out) < MAX_LEDGER:
            out[str(path)] = (value[0], value[1])
    return out


def ledger_to_json(ledger: dict) -> dict:
    return {"schema": 1, "databases": {path: list(value) for path, value in ledger.items()}}
