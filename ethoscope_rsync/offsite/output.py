"""Parsers of restic's output, and what a failed restic command means. Pure functions.

restic's answers are checked before use, as a device's are: a repository on a NAS or a server can
be broken or hostile. Lines are bounded by :mod:`ethoscope_rsync.system.execute` (MAX_RECORD, and
MAX_STDOUT of what is kept); here every record is a JSON object with the right types or it is
ignored, numbers are finite and not negative, ids are hex, and no list is read past its bound.

restic 0.14 (Debian 12) exits 1 on any fatal error and says what in words; 0.17 and later (Debian
13) also exit 10 (no repository), 11 (locked) and 12 (wrong password). Both are understood.
"""
from __future__ import annotations

import dataclasses
import datetime
import json
import math
import re

from ethoscope_rsync.system.execute import Result
from ethoscope_rsync.system.logs import printable

MAX_LINE = 1 << 16           # a longer JSON line is not restic's
MAX_SNAPSHOTS = 1000         # snapshots read from one answer (we ask for the newest only)
MESSAGE = 300                # characters of restic's words kept in a message

# What went wrong, for people and for the alerts.
PASSWORD = "wrong password"
MISSING = "no repository"
UNREACHABLE = "repository unreachable"
HOST_KEY = "repository host key changed"
REFUSED = "repository login refused"
FULL = "repository full"
LOCKED = "repository locked"
DAMAGED = "repository damaged"
UNREADABLE = "files not readable"
NOT_INSTALLED = "restic not installed"
TIMED_OUT = "timed out"
STOPPED = "stopped"
FAILED = "restic failed"


@dataclasses.dataclass(frozen=True)
class Progress:
    percent: float
    files_done: int
    total_files: int
    bytes_done: int
    total_bytes: int


@dataclasses.dataclass(frozen=True)
class Summary:
    snapshot: str                # short id ("" on a dry run)
    files_new: int
    files_changed: int
    files_unmodified: int
    data_added: int
    total_files: int
    total_bytes: int
    seconds: float


@dataclasses.dataclass(frozen=True)
class FileError:
    """A file restic could not read (exit 3: the snapshot lacks it)."""
    item: str
    error: str


@dataclasses.dataclass(frozen=True)
class SnapshotInfo:
    id: str
    time: float
    host: str
    tags: tuple
    paths: tuple


@dataclasses.dataclass(frozen=True)
class Failure:
    problem: str                 # one of the names above
    detail: str                  # restic's (or ssh's) own words, one printable line


def _count(value) -> int | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        return None
    return int(value)


def _seconds(value) -> float:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value >= 0
    return float(value) if ok else 0.0


def _object(line: str) -> dict | None:
    if len(line) > MAX_LINE or not line.lstrip().startswith("{"):
        return None
    try:
        data = json.loads(line)
    except (ValueError, RecursionError):
        return None
    return data if isinstance(data, dict) else None


def short_id(value) -> str:
    """A snapshot id as restic writes it (hex), cut to restic's 8-character short form; else ''."""
    return value[:8] if isinstance(value, str) and re.fullmatch(r"[0-9a-f]{8,64}", value) else ""


def parse_backup_line(line: str):
    """One line of ``restic backup --json`` -> Progress, Summary, FileError or None."""
    data = _object(line)
    if data is None:
        return None
    kind = data.get("message_type")
    if kind == "status":
        counts: list = [_count(data.get(k, 0)) for k in ("files_done", "total_files", "bytes_done", "total_bytes")]
        if None in counts:
            return None
        percent = min(100.0, _seconds(data.get("percent_done")) * 100.0)
        return Progress(round(percent, 1), *counts)
    if kind == "summary":
        keys = ("files_new", "files_changed", "files_unmodified", "data_added", "total_files_processed",
                "total_bytes_processed")
        counts = [_count(data.get(k, 0)) for k in keys]
        if None in counts:
            return None
        new, changed, unmodified, added, files, size = counts
        return Summary(short_id(data.get("snapshot_id")), new, changed, unmodified, added, files, size,
                       _seconds(data.get("total_duration")))
    if kind == "error":
        error = data.get("error")
        message = error.get("message") if isinstance(error, dict) else error
        return FileError(printable(str(data.get("item", "")), 500), printable(str(message or "?"), MESSAGE))
    return None


def parse_time(value) -> float | None:
    """restic's RFC 3339 time with nanoseconds ('2026-12-07T20:31:32.12196745Z', '...+01:00') -> epoch."""
    if not isinstance(value, str) or len(value) > 64:
        return None
    match = re.fullmatch(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d{1,9}))?(Z|[+-]\d\d:\d\d)", value)
    if not match:
        return None
    zone = "+00:00" if match.group(3) == "Z" else match.group(3)
    try:
        moment = datetime.datetime.fromisoformat(match.group(1) + zone)
    except ValueError:
        return None
    return moment.timestamp() + float("0." + (match.group(2) or "0"))


def _strings(value, limit: int) -> tuple:
    items = value if isinstance(value, list) else []
    return tuple(printable(v, 500) for v in items[:limit] if isinstance(v, str))


def parse_snapshots(text: str) -> list:
    """``restic snapshots --json`` -> SnapshotInfo, oldest first; what is not a snapshot is skipped."""
    try:
        data = json.loads(text) if len(text) <= 8 * MAX_LINE * MAX_SNAPSHOTS else None
    except (ValueError, RecursionError):
        return []
    found = []
    for item in (data if isinstance(data, list) else [])[:MAX_SNAPSHOTS]:
        if not isinstance(item, dict):
            continue
        ident, moment = short_id(item.get("id")), parse_time(item.get("time"))
        if ident and moment is not None:
            found.append(SnapshotInfo(ident, moment, printable(str(item.get("hostname", "")), 200),
                                      _strings(item.get("tags"), 20), _strings(item.get("paths"), 20)))
    return sorted(found, key=lambda s: s.time)


def parse_stats(text: str) -> int | None:
    """``restic stats --json --mode raw-data`` -> bytes the repository stores, or None."""
    data = _object(text.strip().splitlines()[-1]) if text.strip() else None
    return _count(data.get("total_size")) if data else None


def parse_forget(text: str) -> int | None:
    """``restic forget --json`` -> how many snapshots it removed, or None."""
    data = None
    for line in text.strip().splitlines()[-1:]:
        try:
            data = json.loads(line) if len(line) <= 8 << 20 else None
        except (ValueError, RecursionError):
            return None
    if not isinstance(data, list):
        return None
    removed = 0
    for group in data[:MAX_SNAPSHOTS]:
        if isinstance(group, dict) and isinstance(group.get("remove"), list):
            removed += len(group["remove"])
    return removed


# ---------------------------------------------------------------- what went wrong

# (pattern in restic's or ssh's words, problem), the first that matches wins: ssh's own lines
# ("subprocess ssh: ...") before restic's conclusion about them.
_RECOGNISED = (
    (r"REMOTE HOST IDENTIFICATION HAS CHANGED|Host key verification failed", HOST_KEY),
    (r"Permission denied \(publickey", REFUSED),
    (r"wrong password or no key found", PASSWORD),
    (r"no space left on device|quota exceeded|disk quota|Insufficient Storage|SSH_FX_FAILURE", FULL),
    (r"repository is already locked|unable to create lock", LOCKED),
    (r"Could not resolve hostname|No route to host|Connection (timed out|refused|reset|closed)|Network is unreachable"
     r"|connect to host|unable to start the sftp session|dial tcp|i/o timeout|no such host|Broken pipe"
     r"|not responding|connection lost|ssh command exited", UNREACHABLE),
    (r"Is there a repository at the following location\?|repository does not exist|unable to open config file"
     r"|config file does not exist", MISSING),
    (r"repository contains errors|ciphertext verification failed|Pack ID does not match|hash does not match"
     r"|error for tree|is damaged|are damaged|corrupt", DAMAGED),
)
_EXIT_CODES = {10: MISSING, 11: LOCKED, 12: PASSWORD}


def _detail(stderr: str) -> str:
    """restic's last word: its Fatal line, else ssh's, else the last line, one printable line."""
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    for prefix in ("Fatal:", "subprocess ssh:", "error:"):
        chosen = [line for line in lines if line.startswith(prefix)]
        if chosen:
            return printable(chosen[-1], MESSAGE)
    return printable(lines[-1], MESSAGE) if lines else ""


def classify(result: Result) -> Failure | None:
    """None when restic succeeded (exit 0), else what went wrong and its words."""
    if result.returncode == 0 and not result.timed_out and not result.interrupted:
        return None
    detail = _detail(result.stderr)
    if result.interrupted:
        return Failure(STOPPED, "stopped by a signal")
    if result.timed_out:
        return Failure(TIMED_OUT, "did not finish within its time limit ([offsite] timeout)")
    if result.returncode == 127 and result.stderr.startswith("cannot run"):
        return Failure(NOT_INSTALLED, "restic is not installed (apt install restic)")
    if result.returncode in _EXIT_CODES:
        return Failure(_EXIT_CODES[result.returncode], detail)
    if result.returncode == 3:
        return Failure(UNREADABLE, detail or "some files could not be read; the snapshot lacks them")
    for pattern, problem in _RECOGNISED:
        if re.search(pattern, result.stderr):
            return Failure(problem, detail)
    return Failure(FAILED, detail or f"exit status {result.returncode}")


def check_result(result: Result) -> tuple:
    """``restic check`` -> (sound, one line): "no errors were found" is its word for sound."""
    failure = classify(result)
    if failure is None and "no errors were found" in result.stdout:
        return True, "no errors were found"
    if failure is None:
        return False, "restic check ended without saying the repository is sound"
    return False, f"{failure.problem}: {failure.detail}" if failure.detail else failure.problem


def parse_df(text: str) -> tuple | None:
    """sftp's ``df`` (KiB: Size, Used, Avail, (root), %Capacity) -> (total bytes, free bytes), or None."""
    for line in text.splitlines()[:50]:
        words = line.split()
        if len(words) == 5 and all(w.isdigit() and len(w) < 20 for w in words[:4]) and words[4].endswith("%"):
            return int(words[0]) * 1024, int(words[2]) * 1024
    return None
