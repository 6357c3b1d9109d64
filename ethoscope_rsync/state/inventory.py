"""The node's inventory of every device's files: one SQLite database beside the history.

``inventory.sqlite`` in the state folder (stdlib :mod:`sqlite3`, WAL) holds, per device and tree,
every file of the device's last listing (path -> size), so that a pass can tell which files the
device deleted since (they stay on the node, counted as retired) without any document holding a
device's whole tree. Its one writer is the pass's :class:`~ethoscope_rsync.state.store.StatusStore`
(under the pass lock); readers open it read-only. ``history.json`` keeps only each tree's summary
(:class:`~ethoscope_rsync.state.history.Inventory`: totals, the newest files, the databases).

A device cannot grow it without bound: a path longer than PATH_MAX characters, and the files of a
tree past the first FILES_MAX, are counted in the totals but not kept one by one
(:func:`bounded`); the job names such a device in a warning (:func:`untracked_warning`).
"""
from __future__ import annotations

import contextlib
import os
import sqlite3
import time
from pathlib import Path
from urllib.parse import quote

PATH_MAX = 512          # characters: an ethoscope's paths are about 150
FILES_MAX = 50_000      # files of one device's tree kept one by one (a large lab's device: ~10,000)
SIZE_MAX = 1 << 62      # bytes: what SQLite's integers hold of a size a device claims
BUSY_MS = 10_000        # a reader's checkpoint may hold the writer this long

SCHEMA = """
CREATE TABLE IF NOT EXISTS trees (
    id INTEGER PRIMARY KEY, device TEXT NOT NULL, kind TEXT NOT NULL,
    retired_files INTEGER NOT NULL, retired_bytes INTEGER NOT NULL, UNIQUE (device, kind));
CREATE TABLE IF NOT EXISTS files (
    tree INTEGER NOT NULL, path BLOB NOT NULL, size INTEGER NOT NULL, PRIMARY KEY (tree, path)) WITHOUT ROWID;
"""


def _blob(path: str) -> bytes:
    """Paths as bytes: what a device sends need not be UTF-8 (kept as surrogate escapes)."""
    return path.encode("utf-8", "surrogateescape")


def _text(blob: bytes) -> str:
    return bytes(blob).decode("utf-8", "surrogateescape")


def fits(path: str) -> bool:
    """A path the inventory keeps one by one."""
    return len(path) <= PATH_MAX


def bounded(listing: dict) -> tuple:
    """(the files kept one by one, untracked files, their bytes): the paths that fit, the first
    FILES_MAX of them; the others only counted."""
    files: dict = {}
    untracked = untracked_bytes = 0
    for path, size in listing.items():
        if fits(path) and len(files) < FILES_MAX:
            files[path] = size
        else:
            untracked += 1
            untracked_bytes += size
    return files, untracked, untracked_bytes


def untracked_warning(kind: str, untracked: int) -> str:
    return (f"{untracked} of its {kind} files not kept one by one in the node's inventory (paths over "
            f"{PATH_MAX} characters, or past {FILES_MAX} files): counted in its totals only")


class Inventories:
    """The inventory database. `path` None: in memory (tests, dry runs)."""

    def __init__(self, path: Path | None = None, *, readonly: bool = False, immutable: bool = False):
        if path is None:
            self.db = sqlite3.connect(":memory:", isolation_level=None)
        elif readonly:
            mode = "ro&immutable=1" if immutable else "ro"
            self.db = sqlite3.connect(f"file:{quote(str(path))}?mode={mode}", uri=True, isolation_level=None)
        else:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            self.db = sqlite3.connect(str(path), isolation_level=None)
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.execute(f"PRAGMA busy_timeout={BUSY_MS}")
        if not readonly:
            self.db.executescript(SCHEMA)
        self.problem = ""          # the first error writing it (the pass goes on; its journal says)

    def close(self) -> None:
        self.db.close()

    def _tree(self, device: str, kind: str) -> tuple:
        """(id, retired files, retired bytes) of a device's tree, or None when it has no record."""
        return self.db.execute("SELECT id, retired_files, retired_bytes FROM trees WHERE device = ? AND kind = ?",
                               (device, kind)).fetchone()

    def _rows(self, device: str, kind: str, order: str = "", limit: int = -1):
        tree = self._tree(device, kind)
        if tree is None:
            return ()
        return self.db.execute(f"SELECT path, size FROM files WHERE tree = ? {order} LIMIT ?", (tree[0], limit))

    def files(self, device: str, kind: str) -> dict:
        """The device's tree as last listed (path -> size)."""
        return {_text(path): size for path, size in self._rows(device, kind)}

    def newest(self, device: str, kind: str, count: int) -> dict:
        """The `count` newest files of a tree (ethoscope paths start with the experiment's date)."""
        return {_text(path): size for path, size in self._rows(device, kind, "ORDER BY path DESC", count)}

    def count(self, device: str, kind: str) -> int:
        tree = self._tree(device, kind)
        return 0 if tree is None else self.db.execute("SELECT count(*) FROM files WHERE tree = ?",
                                                      (tree[0],)).fetchone()[0]

    def retired(self, device: str, kind: str) -> tuple | None:
        """(files, bytes) the device deleted since they were copied (None: nothing recorded)."""
        tree = self._tree(device, kind)
        return None if tree is None else tree[1:]

    def replace(self, device: str, kind: str, listing: dict, retired: tuple = (0, 0)) -> tuple:
        """The device's tree is now `listing` (already :func:`bounded`); the files it no longer has
        are retired. Returns the tree's retired (files, bytes) in all, counted from `retired` when
        the database has no record of them (a history older than it). Only what changed is
        written, in one transaction: a pass killed after it never counts a file twice."""
        with self._noted():      # a full disk: the totals of this pass stay right
            return self._replace(device, kind, listing, retired)
        return retired

    def _replace(self, device: str, kind: str, listing: dict, retired: tuple) -> tuple:
        old = self.files(device, kind)
        gone = [path for path in old if path not in listing]
        changed = [(_blob(path), min(size, SIZE_MAX)) for path, size in listing.items()
                   if old.get(path) != min(size, SIZE_MAX)]
        tree = self._tree(device, kind)
        after = tree[1:] if tree else retired
        after = (after[0] + len(gone), min(after[1] + sum(old[path] for path in gone), SIZE_MAX))
        if gone or changed or tree is None:
            with self._transaction():
                if tree is None:
                    tree = (self.db.execute("INSERT INTO trees (device, kind, retired_files, retired_bytes) "
                                            "VALUES (?, ?, 0, 0)", (device, kind)).lastrowid,)
                self.db.executemany("DELETE FROM files WHERE tree = ? AND path = ?",
                                    ((tree[0], _blob(path)) for path in gone))
                self.db.executemany("INSERT OR REPLACE INTO files VALUES (?, ?, ?)",
                                    ((tree[0], *row) for row in changed))
                self.db.execute("UPDATE trees SET retired_files = ?, retired_bytes = ? WHERE id = ?",
                                (*after, tree[0]))
        return after

    def adopt(self, device: str, kind: str, listing: dict, retired: tuple) -> None:
        """A tree from an old history.json (which kept it whole, with its retired totals), unless
        the database has it already."""
        with self._noted():
            if self.retired(device, kind) is None:
                self.replace(device, kind, bounded(listing)[0], retired)

    def forget(self, device: str) -> None:
        """A device retired from the history."""
        with self._noted(), self._transaction():
            self.db.execute("DELETE FROM files WHERE tree IN (SELECT id FROM trees WHERE device = ?)", (device,))
            self.db.execute("DELETE FROM trees WHERE device = ?", (device,))

    def rename(self, old: str, new: str) -> None:
        """A device known by its name until its first contact is keyed by its machine id from then on."""
        with self._noted():
            if old != new and all(self.retired(new, kind) is None for kind in ("results", "videos")):
                with self._transaction():
                    self.db.execute("UPDATE trees SET device = ? WHERE device = ?", (new, old))

    @contextlib.contextmanager
    def _noted(self):
        """An error of the database is noted (the first) and the pass goes on."""
        try:
            yield
        except sqlite3.Error as error:
            self.problem = self.problem or f"cannot update the inventory database: {error}"

    @contextlib.contextmanager
    def _transaction(self):
        self.db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        self.db.execute("COMMIT")


def open_inventories(path: Path) -> tuple:
    """(the pass's :class:`Inventories` at `path`, a problem to log or ""): a database SQLite cannot
    use is set aside (``.damaged-<epoch>``) and a new one started, whose first pass counts nothing as
    retired; when none can be opened there, one in memory."""
    try:
        return Inventories(path), ""
    except (sqlite3.Error, OSError) as error:
        problem = f"inventory database {path} unusable ({error})"
    aside = f"{path}.damaged-{int(time.time())}"
    try:
        os.replace(path, aside)
        for suffix in ("-wal", "-shm"):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(f"{path}{suffix}")
        return Inventories(path), f"{problem}: set aside as {aside}, a new one started"
    except (OSError, sqlite3.Error) as error:
        return Inventories(), f"{problem}; cannot start a new one ({error}): this pass keeps it in memory"


def newest_files(path: Path, device: str, kinds, count: int) -> dict:
    """kind -> the `count` newest files of the device's tree, for a reader (the status service,
    whose sandbox may not let it create the WAL's shared-memory file: between passes, when there
    is no WAL, the file is read as it stands). {} when the database cannot be read."""
    for immutable in (False, True):
        if immutable and os.path.exists(f"{path}-wal"):
            break
        try:
            db = Inventories(path, readonly=True, immutable=immutable)
        except sqlite3.Error:
            continue
        try:
            return {kind: db.newest(device, kind, count) for kind in kinds}
        except sqlite3.Error:
            continue
        finally:
            db.close()
    return {}
