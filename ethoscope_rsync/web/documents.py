"""The status files as prepared bytes: rendered, compressed and tagged once per change.

The web service serves the same few documents to every poll. A :class:`Snapshot` holds them for
one version of ``status.json`` + ``history.json`` — the files' ``(dev, inode, mtime_ns, size)`` —
until ``render.next_change`` says the output changes by itself (a device turning stale, a running
pass's duration; a running pass whose process is gone shows as interrupted from then on). Each
document is a :class:`Representation`: its bytes, the gzip of them and a
strong ETag of each, computed once, so a warm request costs two ``stat`` calls and a dict lookup,
and a conditional poll that changed nothing gets a few hundred bytes.

The parsed JSON is dropped as soon as the bytes exist (and the freed heap given back to the
kernel): a 100-device status parses into far more memory than its rendered bytes.
"""
from __future__ import annotations

import base64
import ctypes
import hashlib
import json
import math
import os
import threading
import zlib
from typing import Callable, NamedTuple

from ethoscope_rsync.render import upstream as render
from ethoscope_rsync.render import verdict
from ethoscope_rsync.state import offsite, pauses
from ethoscope_rsync.state.model import settled
from ethoscope_rsync.system.leftovers import process_alive

GZIP_MIN = 256       # smaller bodies gain nothing from gzip (its header alone is 18 bytes)
GZIP_LEVEL = 6


class Representation(NamedTuple):
    content_type: str
    body: bytes
    etag: str                    # strong ETag of body, quoted
    gzip_body: bytes | None      # None when gzip would not be smaller
    gzip_etag: str | None


def prepare(body: bytes, content_type: str) -> Representation:
    """Bytes → a representation with its strong ETag and, when smaller, its gzip (deterministic:
    no name, no timestamp, so the same bytes get the same ETags after a restart)."""
    tag = base64.urlsafe_b64encode(hashlib.blake2b(body, digest_size=12).digest()).decode()
    packed = None
    if len(body) >= GZIP_MIN:
        z = zlib.compressobj(GZIP_LEVEL, zlib.DEFLATED, 31)   # wbits 31: gzip framing, mtime 0
        packed = z.compress(body) + z.flush()
        if len(packed) >= len(body):
            packed = None
    return Representation(content_type, body, '"%s"' % tag, packed,
                          '"%s.gz"' % tag if packed is not None else None)


def dumps(doc) -> bytes:
    """Compact JSON bytes (the status documents are read by programs)."""
    return json.dumps(doc, separators=(",", ":"), allow_nan=False, default=str).encode()


class StatusUnavailable(Exception):
    """The status file exists but cannot be read or is not a JSON object (→ 503)."""


def _identity(st) -> tuple:
    return (st.st_dev, st.st_ino, st.st_mtime_ns, st.st_size)


class JsonFile:
    """A JSON object file: ``identity()`` by ``stat``, ``load()`` → ``(identity, doc or None)``."""

    def __init__(self, path):
        self.path = os.fspath(path) if path else None

    def identity(self) -> tuple:
        if not self.path:
            return ("none",)
        try:
            return _identity(os.stat(self.path))
        except FileNotFoundError:
            return ("missing",)
        except OSError as exc:
            return ("error", exc.errno)

    def load(self) -> tuple:
        """→ (identity, document or None when missing); :class:`StatusUnavailable` when unusable."""
        if not self.path:
            return ("none",), None
        try:
            with open(self.path, "rb") as f:
                key = _identity(os.fstat(f.fileno()))
                data = f.read()
        except FileNotFoundError:
            return ("missing",), None
        except OSError as exc:
            raise StatusUnavailable("cannot read %s: %s" % (self.path, exc.strerror)) from None
        try:
            doc = json.loads(data)
        except ValueError as exc:
            raise StatusUnavailable("%s: invalid JSON: %s" % (self.path, exc)) from None
        if not isinstance(doc, dict):
            raise StatusUnavailable("%s: not a JSON object" % self.path)
        return key, doc


def _malloc_trim():
    try:
        return ctypes.CDLL("libc.so.6").malloc_trim
    except (OSError, AttributeError):
        return None


_MALLOC_TRIM = _malloc_trim()


class Snapshot:
    """Representations of one version of the files, valid until ``valid_until`` (epoch)."""

    def __init__(self, identity: tuple | None, valid_until: float = math.inf, error: str | None = None,
                 gone: bool = False):
        self.identity = identity
        self.valid_until = valid_until
        self.gone = gone               # built from a status whose running pass's process was gone
        self.error = error             # the status file's problem (→ 503), cached like a document
        self.documents: dict = {}      # name → (second or None, Representation or None)


Build = Callable[[object, object, float], object]
_MISSING = object()


class Documents:
    """Documents prepared from the status files (representations, mostly), rebuilt on change.

    ``get(name, build)`` returns the cached document ``name`` or builds it with
    ``build(status, history, now)``; concurrent misses wait for one build. ``per_second``
    documents (the HTML page shows ages) are rebuilt once a second at most, those with a ``period``
    (``GET /``'s verdict shows ages in minutes) once a period at most.
    """

    def __init__(self, status_file, history_file, stale_after: float, clock, on_history_error=None,
                 offsite_file=None, overdue_after: float = 0.0, pauses_file=None):
        self.status = JsonFile(status_file)
        self.pauses = JsonFile(pauses_file)         # the devices the admin paused, read beside the history
        self.overdue_after = float(overdue_after)
        self.history = JsonFile(history_file)
        self.offsite = JsonFile(offsite_file)      # the second copy's state, read beside the history
        self.stale_after = float(stale_after)
        self.clock = clock
        self.on_history_error = on_history_error or (lambda message: None)
        self._snapshot = Snapshot(None)
        self._build_lock = threading.Lock()
        self._history_error_for = None
        self.builds = 0

    def _cached(self, name, second, now):
        """The current snapshot (or None) and the cached document ``name`` (or _MISSING)."""
        snap = self._snapshot
        if snap.identity != self._identities() or now >= snap.valid_until:
            return None, _MISSING
        if snap.error:
            raise StatusUnavailable(snap.error)
        hit = snap.documents.get(name)
        return snap, (hit[1] if hit is not None and hit[0] == second else _MISSING)

    def _identities(self) -> tuple:
        return (self.status.identity(), self.history.identity(), self.offsite.identity(), self.pauses.identity())

    def get(self, name, build: Build, per_second: bool = False, period: float = 0.0):
        """The document ``name`` as ``build`` made it; StatusUnavailable (→ 503)."""
        now = self.clock()
        second = int(now) if per_second else int(now // period) if period else None
        doc = self._cached(name, second, now)[1]
        if doc is not _MISSING:
            return doc
        with self._build_lock:          # one build at a time: concurrent misses wait for it
            snap, doc = self._cached(name, second, now)
            return doc if doc is not _MISSING else self._build(snap, name, build, second, now)

    def _with_offsite(self, history) -> tuple:
        """The history with the second copy's state attached (a run killed before its end shown
        interrupted), and that file's identity. An unreadable offsite.json shows no second copy."""
        try:
            okey, doc = self.offsite.load()
        except StatusUnavailable:
            return history, self.offsite.identity()
        if doc is not None:
            doc = offsite.settled(offsite.OffsiteState.from_json(doc), process_alive).to_json()
        return offsite.attach(history, doc), okey

    def _build(self, snap, name, build, second, now):
        status = found = history = None
        try:
            skey, found = self.status.load()
            status = settled(found, process_alive)    # a pass killed before its end is not running
        except StatusUnavailable as exc:
            self._snapshot = Snapshot(self._identities(), error=str(exc))
            raise
        try:
            hkey, history = self.history.load()
        except StatusUnavailable as exc:
            hkey = self.history.identity()
            if self._history_error_for != hkey:
                self._history_error_for = hkey
                self.on_history_error(str(exc))
        history, okey = self._with_offsite(history)
        try:
            pkey, doc = self.pauses.load()
        except StatusUnavailable:                   # an unreadable paused.json shows no pause
            pkey, doc = self.pauses.identity(), None
        history = pauses.attach(history, doc)
        try:
            identity = (skey, hkey, okey, pkey)
            gone = status is not found     # the same file, read anew: every document of it tells so
            if snap is None or snap.identity != identity or snap.gone != gone:
                valid = min(render.next_change(status, history, now, self.stale_after),
                            verdict.next_change(status, history, now, self.stale_after, self.overdue_after))
                snap = self._snapshot = Snapshot(identity, valid, gone=gone)
            rep = build(status, history, now)
            snap.documents[name] = (second, rep)
            self.builds += 1
            return rep
        finally:
            del status, found, history
            if _MALLOC_TRIM is not None:
                _MALLOC_TRIM(0)      # glibc keeps a parse's freed heap otherwise: RSS stays flat
