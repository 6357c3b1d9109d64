"""What a device tells us at the start of its job, in one small shell command (no Python on it).

Over the ssh connection that the job's rsyncs then share, the probe prints the device's machine id,
its CPU features (for the cipher), the top-level folders of its results and videos trees (only its
own ``<machine id>/`` folder is copied; anything else is named in a warning), and the size and
mtime of every database file, so that databases unchanged since their last verified copy are neither
held nor copied again. The device costs one ``sh`` (its built-ins read the machine id and the CPU
and list the two top folders), one ``find`` and one ``head``: a process started costs a Raspberry Pi
milliseconds of the CPU it tracks flies with.

Everything here is pure; the answer is hostile input: bounded, parsed strictly, and every path
checked to stay inside the device's own folder before it is used. A database listing that was cut
(past LISTING_LIMIT bytes or MAX_DATABASE_FILES files) makes the answer incomplete: a database left
out must not look absent from the device; a record cut in the middle is never parsed.
"""
from __future__ import annotations

import dataclasses
import posixpath
import re
import shlex

MARK = "@ethoscope-backup-probe "
MAX_OUTPUT = 4 << 20              # bytes of probe output read at most
LISTING_LIMIT = MAX_OUTPUT - 65536   # bytes of the database listing kept (the device sends one more)
MAX_TOP_ENTRIES = 100
CUT_SHORT = "the answer ended before its end mark"     # (the link, not the limits: worth another try)
MAX_DATABASE_FILES = 20000
DATABASE_SUFFIXES = (".db", ".db-wal", ".db-shm")
_ID_RE = re.compile(r"[0-9a-f]{32}")
_STAT_RE = re.compile(r"(\d{1,15}) (\d{1,12}(?:\.\d{1,10})?) \./(.+)", re.S)


def _entries(folder: str) -> str:
    """Shell built-ins printing the names in `folder` (hidden ones too), at most MAX_TOP_ENTRIES."""
    quoted = shlex.quote(folder.rstrip("/") or "/")
    return (f"n=0; for f in {quoted}/* {quoted}/.[!.]* {quoted}/..?*; do"
            f" {{ [ -e \"$f\" ] || [ -L \"$f\" ]; }} || continue; n=$((n + 1));"
            f" [ $n -gt {MAX_TOP_ENTRIES} ] && break; printf '%s\\n' \"${{f##*/}}\"; done")


def probe_script(remote_results: str, remote_videos: str) -> str:
    """The remote command: sections introduced by MARK lines; database stats NUL-terminated."""
    results = shlex.quote(remote_results)
    return "; ".join((
        f"echo '{MARK}machine-id'", "id=", "{ IFS= read -r id || :; } 2>/dev/null </etc/machine-id",
        "printf '%.64s\\n' \"$id\"",
        f"echo '{MARK}cpu'",
        "while IFS= read -r line; do case $line in flags*:*|Features*:*) printf '%.8192s\\n' \"$line\"; break;;"
        " esac; done 2>/dev/null </proc/cpuinfo",
        f"echo '{MARK}results'", _entries(remote_results),
        f"echo '{MARK}videos'", _entries(remote_videos),
        f"echo '{MARK}databases'",
        f"cd -- {results} 2>/dev/null && find . -type f \\( -name '*.db' -o -name '*.db-wal' -o -name '*.db-shm' \\)"
        f" -printf '%s %T@ %p\\0' 2>/dev/null | head -c {LISTING_LIMIT + 1}",   # one more: says it was cut
        "echo", f"echo '{MARK}end'",
    ))


def make_probe_command(ssh_argv, target: str, remote_results: str, remote_videos: str) -> tuple:
    """ssh argv + target + the probe as ONE remote command string (run by the device's shell)."""
    return tuple(ssh_argv) + (target, probe_script(remote_results, remote_videos))


@dataclasses.dataclass(frozen=True)
class FileStat:
    size: int
    mtime: str           # as find printed it: compared, never computed with


@dataclasses.dataclass(frozen=True)
class Probe:
    machine_id: str                   # "" when the device has no valid /etc/machine-id
    aes: bool | None                  # AES instructions; None when the CPU did not say
    top: dict                         # kind -> tuple of top-level entry names
    files: dict                       # path under the results root -> FileStat (database files only)
    complete: bool                    # False when the answer was cut short, its database listing too
    shortfall: str = ""               # why it is not complete, for people

    def databases(self, folder: str) -> dict:
        """The databases in the device's own folder: path (under the results root) ->
        (db stat, -wal stat or None, has -shm). The signature of what the device holds."""
        prefix = folder + "/"
        found = {}
        for path, stat in self.files.items():
            if path.startswith(prefix) and path.endswith(".db"):
                found[path] = (stat, self.files.get(path + "-wal"), path + "-shm" in self.files)
        return found

    def foreign(self, folder: str) -> dict:
        """kind -> top-level entries that are not the device's own folder (never copied)."""
        return {kind: tuple(name for name in names if name != folder)
                for kind, names in self.top.items() if any(name != folder for name in names)}


def safe_relative(path: str) -> str | None:
    """`path` if it is a plain relative path (no '..', no absolute, no empty or '.' parts), else None."""
    if not path or path.startswith("/") or "\0" in path:
        return None
    parts = path.split("/")
    if any(part in ("", ".", "..") for part in parts):
        return None
    return posixpath.normpath(path) if posixpath.normpath(path) == path else None


def inside(folder: str, path: str) -> bool:
    """True when `path` (relative to a tree's root) is a file in `folder`/ of that tree."""
    checked = safe_relative(path)
    return checked is not None and checked.startswith(folder + "/")


def has_aes(cpuinfo: str) -> bool | None:
    """Whether the first ``flags`` (x86) or ``Features`` (ARM) line of a /proc/cpuinfo lists AES
    instructions; None when there is no such line."""
    for line in cpuinfo.splitlines():
        name, colon, values = line.partition(":")
        if colon and name.strip().lower() in ("flags", "features"):
            return "aes" in values.lower().split()
    return None


def parse_probe(output: str) -> Probe:
    """The probe's stdout -> Probe. Unknown sections and malformed lines are ignored."""
    sections: dict = {}
    current = None
    for chunk in output.split("\n"):
        if chunk.startswith(MARK):
            current = chunk[len(MARK):].strip()
            sections[current] = []
        elif current is not None:
            sections[current].append(chunk)
    machine_id = "".join(sections.get("machine-id", [])).strip()
    aes = has_aes("\n".join(sections.get("cpu", [])))
    top = {kind: tuple(name for name in sections.get(kind, []) if name)[:MAX_TOP_ENTRIES]
           for kind in ("results", "videos")}
    shortfall = "" if "end" in sections else CUT_SHORT
    if len(output) >= MAX_OUTPUT:        # what the pass reads of it at most: the same answer again
        shortfall = f"longer than {MAX_OUTPUT} characters"
    listing = "\n".join(sections.get("databases", []))
    records = listing.split("\0")
    if records.pop().strip("\n"):        # a record without its NUL was cut: never parsed
        shortfall = shortfall or "the database listing was cut inside a record"
    if len(listing.encode("utf-8", "surrogateescape")) > LISTING_LIMIT:
        shortfall = shortfall or f"the database listing is longer than {LISTING_LIMIT} bytes"
    files: dict = {}
    for record in records:
        match = _STAT_RE.fullmatch(record.lstrip("\n"))
        if match is None:
            continue
        path = safe_relative(match.group(3))
        if path is None or not path.endswith(DATABASE_SUFFIXES):
            continue
        if len(files) >= MAX_DATABASE_FILES:
            shortfall = shortfall or f"more than {MAX_DATABASE_FILES} database files"
            break
        files[path] = FileStat(int(match.group(1)), match.group(2))
    return Probe(machine_id if _ID_RE.fullmatch(machine_id) else "", aes, top, files, not shortfall, shortfall)
