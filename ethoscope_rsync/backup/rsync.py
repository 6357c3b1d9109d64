"""Pure builders of ssh/rsync argv and parsers of rsync's output. Nothing here runs a process.

Output contract with rsync (``--info=progress2 --out-format``): one line per finished file,
``ETHOSCOPE-BACKUP-FILE <itemize> <length> <bytes> <name>``, and ``\\r``-terminated progress2
records ``   1,234,567  45%   12.34MB/s    0:00:03 (xfr#2, to-chk=3/6)``. rsync escapes
unprintable bytes of names (newlines too) as ``\\#ooo``; :func:`unescape_name` reverses it.
"""
from __future__ import annotations

import dataclasses
import re
import shlex
from pathlib import Path

from ethoscope_rsync.config.record import Config
from ethoscope_rsync.config.devices import Device

FILE_MARK = "ETHOSCOPE-BACKUP-FILE"
HIDDEN = ".ethoscope-backup"                 # our private area inside each destination
PARTIAL_DIR = ".ethoscope-backup-partial"    # rsync keeps interrupted files here, out of sight
DATABASE_PATTERNS = ("*.db", "*.db-wal", "*.db-shm", "*.db-journal")
DB_RAW_DIR = f"{HIDDEN}/raw"                  # raw device copies of databases (see livedb)


@dataclasses.dataclass(frozen=True)
class Outcome:
    """What an rsync exit code means for a job."""
    ok: bool
    retry: bool
    label: str


# rsync(1) EXIT VALUES, plus ssh's 255, mapped once.
_EXIT_TABLE = {
    0: Outcome(True, False, "success"),
    24: Outcome(True, False, "success (some files vanished on the device during the transfer)"),
    1: Outcome(False, False, "syntax or usage error"),
    2: Outcome(False, False, "protocol incompatibility"),
    3: Outcome(False, False, "errors selecting input/output files or directories"),
    4: Outcome(False, False, "requested action not supported"),
    5: Outcome(False, True, "error starting client-server protocol"),
    10: Outcome(False, True, "error in socket I/O"),
    11: Outcome(False, False, "error in file I/O (is the destination full or read-only?)"),
    12: Outcome(False, True, "error in rsync protocol data stream (connection lost)"),
    20: Outcome(False, False, "interrupted"),
    23: Outcome(False, False, "partial transfer due to error"),
    30: Outcome(False, True, "timeout in data send/receive"),
    35: Outcome(False, True, "timeout waiting for daemon connection"),
    126: Outcome(False, False, "command cannot run"),
    127: Outcome(False, False, "command not found"),
    255: Outcome(False, True, "ssh connection failed"),
}

# Failures recognised from rsync's captured stderr by *who* says it:
# ssh's own lines (host keys, authentication) and rsync's sender failing to enter the device's
# folder. A file-level "Permission denied (13)" from rsync, or an error of the node's receiver,
# is not a login problem.
_RECOGNISED = (
    (re.compile(r"REMOTE HOST IDENTIFICATION HAS CHANGED"), "host key changed", False),
    (re.compile(r"^Host key verification failed", re.M), "host key verification failed", False),
    (re.compile(r"Permission denied \((?:publickey|password|keyboard-interactive|hostbased|gssapi)"),
     "ssh authentication refused", False),
    (re.compile(r"^rsync: \[sender\] change_dir \S", re.M), "remote folder missing or unreadable", False),
    # not answering at all: retried within the bounds (keep-alives notice a loss in 15 s, a connect
    # gives up after connect_timeout), so a vanished device is given up within a minute
    (re.compile(r"^ssh: connect to host \S+ port \d+: (Connection timed out|No route to host|"
                r"Network is unreachable|Connection refused|Host is unreachable)", re.M), "device unreachable", True),
)


def classify_exit(code: int, stderr: str = "") -> Outcome:
    """Map an rsync exit code (and its stderr) to an Outcome; unknown codes fail without retry."""
    outcome = _EXIT_TABLE.get(code, Outcome(False, False, f"rsync exit code {code}"))
    if not outcome.ok:
        for pattern, label, retry in _RECOGNISED:
            if pattern.search(stderr):
                return Outcome(False, retry, label)
    return outcome


def _lines(stderr: str) -> list:
    return [line.strip() for line in stderr.replace("\r", "\n").split("\n") if line.strip()]


def informative_line(stderr: str) -> str:
    """The line of a failed ssh/rsync's stderr that says what went wrong, in the tool's own words:
    ssh's own line ("ssh: connect to host ...", "ControlPath too long") before rsync's specific
    "rsync: ..." line, before rsync's generic "rsync error: ... (code N)"."""
    lines = _lines(stderr)
    ssh = [line for line in lines if not line.startswith(("rsync", "@", "Warning: Permanently added"))]
    specific = [line for line in lines if line.startswith("rsync: ")]
    return (ssh or specific or lines or [""])[0]


def error_lines(stderr: str, limit: int = 10) -> list:
    """rsync's lines naming what it could not copy (exit 23), at most `limit`."""
    return [line for line in _lines(stderr) if line.startswith("rsync: ")][:limit]


# The ciphers offered to a device, in OpenSSH's default set, reordered: AES-GCM first where both ends
# have AES instructions (several times faster there), chacha20-poly1305 first where either lacks them
# (a Raspberry Pi 3 or 4). A list, not one cipher, so that a device whose ssh lacks the first still agrees.
AES_FIRST = ("aes128-gcm@openssh.com,aes256-gcm@openssh.com,chacha20-poly1305@openssh.com,"
             "aes128-ctr,aes192-ctr,aes256-ctr")
CHACHA_FIRST = ("chacha20-poly1305@openssh.com,aes128-gcm@openssh.com,aes256-gcm@openssh.com,"
                "aes128-ctr,aes192-ctr,aes256-ctr")


def choose_ciphers(configured: str, node_aes: bool | None, device_aes: bool | None, probed: bool = False) -> tuple:
    """-> (cipher list to offer, "" for ssh's own default; why, in words) for one device.
    `configured` is [ssh] ciphers; `device_aes` what the device's CPU said at an earlier contact, or
    (`probed`) in this pass's probe: a device's first contact chooses from its probe's answer."""
    if configured:
        return configured, "[ssh] ciphers"
    if device_aes is None and probed:
        return "", "ssh's default: the device's CPU does not say whether it has AES instructions"
    if device_aes is None:
        return "", "chosen from the device's CPU once its probe answers (first contact)"
    if node_aes and device_aes:
        return AES_FIRST, "AES instructions on the node and the device"
    return CHACHA_FIRST, "no AES instructions on the " + ("device" if node_aes else "node")


def make_ssh_command(config: Config, device: Device, key: str, control_dir: str = "",
                     ciphers: str | None = None) -> tuple:
    """ssh argv for one device: key only, no prompts, bounded connect and keep-alive, our known_hosts.

    With control_dir, the device's sessions of one pass share one connection (ControlMaster):
    one TCP and key exchange instead of four, which the device's CPU notices. `ciphers`: the list
    chosen for the device (:func:`choose_ciphers`; "" ssh's own); None: [ssh] ciphers.
    """
    ciphers = config.ssh.ciphers if ciphers is None else ciphers
    shared = ("-o", "ControlMaster=auto", "-o", f"ControlPath={control_dir}/%C",
              "-o", "ControlPersist=60") if control_dir else ()
    return ("ssh",) + shared + (
        "-i", str(key), "-p", str(config.ssh.port),
        "-o", "BatchMode=yes",
        "-o", "IdentitiesOnly=yes",
        "-o", f"StrictHostKeyChecking={config.ssh.host_key_policy}",
        "-o", f"UserKnownHostsFile={config.ssh.known_hosts}",
        "-o", "GlobalKnownHostsFile=/dev/null",
        "-o", f"HostKeyAlias={device.host_key_alias}",
        "-o", "UpdateHostKeys=no",
        "-o", "HashKnownHosts=no",                           # forget-host finds entries by name
        "-o", f"ConnectTimeout={config.ssh.connect_timeout}",
        "-o", "ServerAliveInterval=5",                       # a vanished device is noticed in 15 s,
        "-o", "ServerAliveCountMax=3",                       # whatever rsync's --timeout for stalled data
        "-o", "LogLevel=ERROR",
    ) + (("-o", f"KexAlgorithms={config.ssh.kex}") if config.ssh.kex else ()) + (
        "-l", config.ssh.user,
    ) + (("-c", ciphers) if ciphers else ())


def ssh_target(config: Config, device: Device) -> str:
    return f"{config.ssh.user}@{device.address}"


def filter_pattern(path: str) -> str:
    """An rsync filter pattern matching exactly `path` from the transfer's root."""
    if any(c in path for c in "*?["):       # rsync reads backslashes as escapes only then
        path = re.sub(r"([\\*?\[])", r"\\\1", path)
    return "/" + path


def make_rsync_command(config: Config, device: Device, kind: str, *, key: str, folder: str,
                       bwlimit_kib: int = 0, stamp: str = "", databases: str = "all", only: tuple = (),
                       dry_run: bool = False, control_dir: str = "", ciphers: str | None = None) -> tuple:
    """rsync argv pulling one device's own folder (`folder`, its machine id) of one tree (`results` or
    `videos`) into the same folder on the node: nothing else of the device's tree is copied.

    databases: "all" copies everything; "skip" leaves SQLite files out (they go through the
    live-database path); "raw" copies only the databases in `only` (paths relative to `folder`)
    and their -wal into the device's raw mirror (see livedb), deleting a mirrored -wal that the
    device no longer has.
    """
    destination = config.destination(kind)
    source = f"{config.ssh.user}@{device.ssh_host}:{config.remote_root(kind)}/{folder}/"
    argv = [
        "rsync", "--recursive", "--times", "--omit-dir-times",
        "--no-links", "--no-devices", "--no-specials",      # regular files only: no symlink escapes
        "--chmod=Du=rwx,Dgo=rx,Fu=rw,Fgo=r",
        "--partial-dir=" + PARTIAL_DIR,                      # interrupted files never get a final name
        "--timeout=" + str(config.transfer.io_timeout),
        "--protect-args",                                  # remote path never word-split by a shell
        "--no-inc-recursive",                                # accurate totals for the progress bar
        "--info=progress2,name2",                            # name2: unchanged files are listed too
        "--stats", "--out-format=" + FILE_MARK + " %i %l %b %n",
        "--exclude=" + HIDDEN, "--exclude=" + HIDDEN + "-*",
        "-e", shlex.join(make_ssh_command(config, device, key, control_dir, ciphers)),
    ]
    if kind == "results" and config.transfer.compress_results:
        argv.append("--compress")
    if bwlimit_kib:
        argv.append(f"--bwlimit={bwlimit_kib}")
    if config.transfer.safe and stamp and databases != "raw":
        argv += ["--backup", f"--backup-dir={destination}/{HIDDEN}/replaced/{stamp}/{folder}"]
    if dry_run:
        argv.append("--dry-run")
    if databases == "skip":
        argv += ["--exclude=" + pattern for pattern in DATABASE_PATTERNS]
    elif databases == "raw":
        argv += ["--delete", "--modify-window=-1", "--prune-empty-dirs", "--include=*/"]
        for path in only:
            argv += [f"--include={filter_pattern(path)}", f"--include={filter_pattern(path + '-wal')}"]
        argv.append("--exclude=*")
        destination = raw_root(config, device)
    argv += [source, f"{destination}/{folder}/"]
    return tuple(argv)


def raw_root(config: Config, device: Device) -> Path:
    """The device's private raw mirror of its databases (one per device)."""
    return config.paths.results / DB_RAW_DIR / device.key


@dataclasses.dataclass(frozen=True)
class Progress:
    bytes: int
    percent: int
    rate: float                  # bytes per second
    to_check: int | None = None
    total_files: int | None = None


@dataclasses.dataclass(frozen=True)
class FileEvent:
    itemize: str
    length: int
    transferred: int
    name: str

    @property
    def is_file(self) -> bool:
        return self.itemize[1:2] == "f"

    @property
    def changed(self) -> bool:
        """True when the file was received (its data went through rsync), not only its times set.

        rsync itemizes a same-size rewrite found by the quick check as '>f..t......': the
        leading '>' is what tells that data was transferred.
        """
        return self.is_file and self.itemize[0] in "><"


_PROGRESS_RE = re.compile(
    r"^\s*([\d,.]+)\s+(\d+)%\s+([\d.]+)([kMGT]?)B/s\s+\S+(?:\s+\(xfr#\d+, (?:to|ir)-chk=(\d+)/(\d+)\))?\s*$")
_RATE_UNITS = {"": 1, "k": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
_ESCAPE_RE = re.compile(r"\\#([0-7]{3})")


def unescape_name(name: str) -> str:
    r"""Undo rsync's ``\#ooo`` escaping of unprintable bytes in file names."""
    if "\\#" not in name:
        return name
    raw = bytearray()
    position = 0
    for match in _ESCAPE_RE.finditer(name):
        raw += name[position:match.start()].encode("utf-8", "surrogateescape")
        raw.append(int(match.group(1), 8))
        position = match.end()
    raw += name[position:].encode("utf-8", "surrogateescape")
    return raw.decode("utf-8", "surrogateescape")


def parse_progress(record: str) -> Progress | None:
    """One progress2 record (between carriage returns) -> Progress, or None."""
    match = _PROGRESS_RE.match(record)
    if not match:
        return None
    to_check = int(match.group(5)) if match.group(5) else None
    total = int(match.group(6)) if match.group(6) else None
    try:
        rate = float(match.group(3)) * _RATE_UNITS[match.group(4)]
    except ValueError:
        return None
    return Progress(int(match.group(1).replace(",", "").replace(".", "")), int(match.group(2)),
                    rate, to_check, total)


# %i is 11 characters, with spaces for "unchanged" (".f          " of a file listed by --info=name2)
_FILE_RE = re.compile(re.escape(FILE_MARK) + r" (\S.{10}) (\d{1,19}) (\d{1,19}) (.+)", re.S)


def parse_file_line(line: str) -> FileEvent | None:
    """One ``--out-format`` line -> FileEvent, or None for anything else."""
    match = _FILE_RE.match(line)
    if not match:
        return None
    return FileEvent(match.group(1), int(match.group(2)), int(match.group(3)), unescape_name(match.group(4)))


@dataclasses.dataclass(frozen=True)
class Stats:
    """Totals from rsync's --stats block (the device's tree as rsync saw it)."""
    files: int = 0
    total_size: int = 0
    transferred_files: int = 0
    transferred_size: int = 0


_STATS_FIELDS = {
    "Number of regular files transferred": "transferred_files",
    "Total file size": "total_size",
    "Total transferred file size": "transferred_size",
}


def parse_stats(records) -> Stats:
    """rsync --stats lines -> Stats; 'Number of files: 7 (reg: 5, dir: 2)' gives the file count."""
    values = {}
    for record in records:
        name, _, rest = record.strip().partition(": ")
        if name == "Number of files":
            reg = re.search(r"reg: ([\d,]+)", rest)
            values["files"] = int(reg.group(1).replace(",", "")) if reg else 0
        elif name in _STATS_FIELDS:
            number = re.match(r"([\d,]+)", rest)
            if number:
                values[_STATS_FIELDS[name]] = int(number.group(1).replace(",", ""))
    return Stats(**values)
