"""What a device job reports to the pass's single status writer: small typed records.

Jobs run in worker threads and share no state: they put these on a queue and the pass's main thread
applies them with :meth:`ethoscope_rsync.state.store.StatusStore.apply` (which rejects any other type).
Every event names its device by key (:func:`ethoscope_rsync.state.model.device_key`).
"""
from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class Started:
    """An attempt at the device's job began."""
    key: str
    attempt: int
    at: float


@dataclasses.dataclass(frozen=True)
class Progressed:
    """rsync's overall progress on one tree."""
    key: str
    kind: str
    percent: int
    bytes: int
    rate: float              # bytes per second
    current_file: str


@dataclasses.dataclass(frozen=True)
class FileReceived:
    """A file arrived (path relative to the tree's root on the node)."""
    key: str
    kind: str
    path: str
    size: int
    transferred: int
    start: float
    end: float


@dataclasses.dataclass(frozen=True)
class TransferEnded:
    """One rsync of one tree ended."""
    key: str
    kind: str
    exit_code: int
    ok: bool
    message: str


@dataclasses.dataclass(frozen=True)
class Listed:
    """The files of a tree as they are on the node after a transfer: path -> size."""
    key: str
    kind: str
    files: tuple             # ((path, size), ...)
    untracked: tuple = (0, 0)   # (files, bytes) of the tree only counted (state.inventory bounds)


@dataclasses.dataclass(frozen=True)
class Contacted:
    """The device answered over ssh with the host key recorded for its name, and told its machine
    id: from now on that name and that id belong to that key (a device from [devices] is keyed
    by its name until it said its id). `aes`: its CPU has AES instructions (None: unknown);
    `ciphers`, `cipher_reason`: at its first contact, the ssh ciphers chosen from its answer (None: unchanged)."""
    key: str
    machine_id: str
    aes: bool | None = None
    ciphers: str | None = None
    cipher_reason: str = ""


@dataclasses.dataclass(frozen=True)
class Warned:
    """Something the operator should know about the device, said once per pass."""
    key: str
    message: str


@dataclasses.dataclass(frozen=True)
class DatabaseChecked:
    """A database copy was recovered and checked (or refused). `signature`: what the device held."""
    key: str
    path: str
    verdict: str
    rows: int
    message: str
    ok: bool = True
    signature: tuple = ()


@dataclasses.dataclass(frozen=True)
class Finished:
    """The device's job ended, for good."""
    key: str
    ok: bool
    message: str
    at: float


EVENTS = (Started, Contacted, Warned, Progressed, FileReceived, TransferEnded, Listed, DatabaseChecked,
          Finished)
