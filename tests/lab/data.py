"""Data generation on simulated devices: experiments (result databases, video chunks, mp4s), random files."""
import datetime
import hashlib
import os
import pwd
import sqlite3
from pathlib import Path

from .system import DEVICE_USER

N_ROIS = 20
BASE_TIME = datetime.datetime(2024, 3, 1, 9, 0, 0)


class LabData:
    """``Lab`` methods that create data in a device's data tree."""

    def _chown_tree(self, root, top):
        pw = pwd.getpwnam(DEVICE_USER)
        p = Path(top)
        while True:
            os.chown(p, pw.pw_uid, pw.pw_gid)
            if p == root or p.parent == p:
                break
            p = p.parent
        for dirpath, dirnames, filenames in os.walk(top):
            for n in dirnames + filenames:
                os.chown(os.path.join(dirpath, n), pw.pw_uid, pw.pw_gid)

    def _next_ts(self, device):
        """Deterministic experiment timestamps: one hour apart, in call order."""
        res = device.data_root / "results" / device.id / device.name
        vid = device.data_root / "videos" / device.id / device.name
        n = 0
        for p in (res, vid):
            if p.is_dir():
                n = max(n, len([c for c in p.iterdir() if c.is_dir()]))
        while True:
            ts = (BASE_TIME + datetime.timedelta(minutes=device.index, hours=n)).strftime("%Y-%m-%d_%H-%M-%S")
            if not (res / ts).exists() and not (vid / ts).exists():
                return ts
            n += 1

    def populate(self, device, experiments=1, db_rows=1000, video_chunks=2, chunk_bytes=4 << 20, mp4=True):
        made = []
        for _ in range(experiments):
            ts = self._next_ts(device)
            rdir = device.data_root / "results" / device.id / device.name / ts
            rdir.mkdir(parents=True)
            db = rdir / ("%s_%s.db" % (ts, device.id))
            _make_db(db, device, ts, db_rows)
            made.append(db)
            vdir = device.data_root / "videos" / device.id / device.name / ts
            if video_chunks or mp4:
                vdir.mkdir(parents=True)
            for n in range(video_chunks):
                p = vdir / ("%s_%s_1280x960@25_%05d.h264" % (ts, device.id, n))
                _random_file(p, chunk_bytes)
                made.append(p)
            if mp4:
                p = vdir / ("%s_%s_1280x960@25.mp4" % (ts, device.id))
                md5 = _random_file(p, max(chunk_bytes // 2, 1024), ftyp=True)
                (vdir / (p.name + ".md5")).write_text(md5 + "\n")
                made += [p, vdir / (p.name + ".md5")]
            self._chown_tree(device.data_root, rdir)
            if vdir.exists():
                self._chown_tree(device.data_root, vdir)
        if self._manifest is not None:
            self._write_node_state()
        return [str(p.relative_to(device.data_root)) for p in made]

    def add_video_chunk(self, device, size_bytes):
        vroot = device.data_root / "videos" / device.id / device.name
        folders = sorted(p for p in vroot.iterdir() if p.is_dir()) if vroot.is_dir() else []
        if not folders:
            ts = self._next_ts(device)
            folder = vroot / ts
            folder.mkdir(parents=True)
        else:
            folder = folders[-1]
            ts = folder.name
        n = len(list(folder.glob("*.h264")))
        while True:
            p = folder / ("%s_%s_1280x960@25_%05d.h264" % (ts, device.id, n))
            if not p.exists():
                break
            n += 1
        _random_file(p, size_bytes)
        self._chown_tree(device.data_root, p)
        return p

    def newest_db(self, device):
        dbs = sorted((device.data_root / "results").glob("*/*/*/*.db"))
        return dbs[-1] if dbs else None


def _random_file(path, size, ftyp=False):
    h = hashlib.md5()
    with open(path, "wb") as f:
        left = size
        if ftyp and size >= 32:
            head = b"\x00\x00\x00\x20ftypisom\x00\x00\x02\x00isomiso2avc1mp41"
            f.write(head)
            h.update(head)
            left -= len(head)
        while left > 0:
            block = os.urandom(min(left, 1 << 20))
            f.write(block)
            h.update(block)
            left -= len(block)
    return h.hexdigest()


def _make_db(path, device, ts, rows):
    con = sqlite3.connect(str(path), isolation_level=None)
    con.execute("PRAGMA journal_mode=WAL")
    con.execute("PRAGMA synchronous=NORMAL")
    con.execute("BEGIN")
    con.execute("CREATE TABLE METADATA (field TEXT, value TEXT)")
    date = datetime.datetime.strptime(ts, "%Y-%m-%d_%H-%M-%S")
    meta = {"machine_id": device.id, "machine_name": device.name, "date_time": str(int(date.timestamp())),
            "frame_width": "1280", "frame_height": "960", "version": "0" * 40, "experimental_info": "{}",
            "selected_options": "{}", "hardware_info": "{}", "reference_points": "[]", "backup_filename":
            path.name}
    con.executemany("INSERT INTO METADATA VALUES (?,?)", sorted(meta.items()))
    con.execute("CREATE TABLE ROI_MAP (roi_idx SMALLINT, roi_value SMALLINT, x SMALLINT, y SMALLINT,"
                " w SMALLINT, h SMALLINT)")
    con.executemany("INSERT INTO ROI_MAP VALUES (?,?,?,?,?,?)",
                    [(i, i, 40 + (i - 1) % 10 * 100, 100 if i <= 10 else 500, 90, 300) for i in range(1, N_ROIS + 1)])
    con.execute("CREATE TABLE VAR_MAP (var_name TEXT, sql_type TEXT, functional_type TEXT)")
    con.executemany("INSERT INTO VAR_MAP VALUES (?,?,?)", [
        ("x", "SMALLINT", "distance"), ("y", "SMALLINT", "distance"), ("w", "SMALLINT", "distance"),
        ("h", "SMALLINT", "distance"), ("phi", "SMALLINT", "angle"), ("is_inferred", "BOOLEAN", "bool"),
        ("has_interacted", "BOOLEAN", "bool"), ("xy_dist_log10x1000", "SMALLINT", "relative_distance_1e6")])
    con.execute("CREATE TABLE START_EVENTS (id INTEGER PRIMARY KEY, t INTEGER, event CHAR(100))")
    con.execute("INSERT INTO START_EVENTS (t, event) VALUES (0, 'graceful_start')")
    con.execute("CREATE TABLE IMG_SNAPSHOTS (id INTEGER PRIMARY KEY AUTOINCREMENT, t INTEGER, img LONGBLOB)")
    con.execute("INSERT INTO IMG_SNAPSHOTS (t, img) VALUES (0, ?)", (os.urandom(4096),))
    for i in range(1, N_ROIS + 1):
        con.execute("CREATE TABLE ROI_%d (id INTEGER PRIMARY KEY AUTOINCREMENT, t INTEGER, x SMALLINT, y SMALLINT,"
                    " w SMALLINT, h SMALLINT, phi SMALLINT, is_inferred BOOLEAN, has_interacted BOOLEAN,"
                    " xy_dist_log10x1000 SMALLINT)" % i)
    seed = int(hashlib.md5(path.name.encode()).hexdigest()[:8], 16)
    for k in range(rows):
        roi = k % N_ROIS + 1
        v = (seed + k * 2654435761) & 0xFFFFFFFF
        con.execute("INSERT INTO ROI_%d (t, x, y, w, h, phi, is_inferred, has_interacted, xy_dist_log10x1000)"
                    " VALUES (?,?,?,?,?,?,?,?,?)" % roi,
                    (40 * (k // N_ROIS + 1), v % 600, (v >> 10) % 80, 8 + (v >> 4) % 20, 4 + (v >> 6) % 10,
                     (v >> 12) % 180, 0, 0, (v >> 3) % 4000))
    con.execute("COMMIT")
    con.close()
