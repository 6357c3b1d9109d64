"""Every setting of backup.conf, written once: section, key, type, range, default, the command-line
options that set it, and its documentation.

From this table come the validation of the file (load.py), the ``Config`` record's sections
(record.py: their fields are checked against it), the command line's setting options
(commands/cli.py) and the shipped ``etc/backup.conf`` (:func:`conffile`, compared byte for byte by
a test); man 5's key list is checked against it (tests/unit/test_docs.py).
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Callable

from ethoscope_rsync.config import syntax


@dataclasses.dataclass(frozen=True)
class Kind:
    """A type of value: its name in man 5, the Python type it becomes, and its parser."""
    name: str
    python: type
    parse: Callable[[str], Any]
    list_ok: bool = False        # a comma-separated list in the file (configobj splits unquoted ones)


def _boolean(text: str) -> bool:
    value = text.strip().lower()
    if value in ("yes", "true", "on", "1"):
        return True
    if value in ("no", "false", "off", "0"):
        return False
    raise ValueError(f"not a boolean: {text!r} (use yes or no)")


def _integer(text: str) -> int:
    try:
        return int(text.strip())
    except ValueError:
        raise ValueError(f"not a whole number: {text!r}") from None


def _number(text: str) -> float:
    try:
        return float(text.strip())
    except ValueError:
        raise ValueError(f"not a number: {text!r}") from None


STRING = Kind("string", str, str)
INTEGER = Kind("integer", int, _integer)
FLOAT = Kind("float", float, _number)
BOOLEAN = Kind("boolean", bool, _boolean)
SIZE = Kind("size", int, syntax.parse_size)
RATE = Kind("rate", int, syntax.parse_rate)
PATH = Kind("path", Path, syntax.parse_absolute)
REMOTE = Kind("string", str, lambda text: text.rstrip("/") or "/")    # a folder on the devices
CIPHERS = Kind("string", str, syntax.parse_ciphers, list_ok=True)
KEX = Kind("string", str, syntax.parse_kex, list_ok=True)
ADDRESSES = Kind("string", tuple, syntax.parse_addresses, list_ok=True)
URL = Kind("string", str, syntax.parse_url)
SERVER = Kind("string", syntax.Endpoint, lambda text: syntax.parse_endpoint(text, default_port=80) if text.strip()
              else None)
LISTEN = Kind("string", syntax.Endpoint, lambda text: syntax.parse_endpoint(text, any_host="0.0.0.0"))
REPOSITORY = Kind("string", syntax.Repository, syntax.parse_repository)
OPTIONAL_PATH = Kind("path", Path, lambda text: syntax.parse_absolute(text.strip()) if text.strip() else None)


@dataclasses.dataclass(frozen=True)
class Flag:
    """A command-line option that sets a setting, in the commands that take it."""
    options: tuple[str, ...]
    commands: tuple[str, ...]
    metavar: str = ""
    const: str | bool | None = None          # store_const: the option sets this value
    help: str = ""                           # "" -> the setting's doc


@dataclasses.dataclass(frozen=True)
class Setting:
    section: str
    key: str
    kind: Kind
    default: str | None      # as written in the file; None: unset (see `unset`)
    doc: str                 # the shipped file's comment
    low: float | None = None
    high: float | None = None
    choices: tuple[str, ...] = ()
    flags: tuple[Flag, ...] = ()
    unset: str = ""          # what an unset value means, and the example the shipped file shows

    def parse(self, text: str) -> Any:
        """The file's (or an option's) text -> the typed value, checked against range and choices."""
        if self.choices and text.strip() not in self.choices:
            raise ValueError(f"must be one of {', '.join(self.choices)}, not {text!r}")
        value = self.kind.parse(text.strip() if self.choices else text)
        if self.low is not None and value < self.low or self.high is not None and value > self.high:
            raise ValueError(f"must be between {_num(self.low)} and {_num(self.high)}, not {text.strip()!r}")
        return value

    @property
    def value(self) -> Any:
        """The typed default (None when unset)."""
        return None if self.default is None else self.parse(self.default)

    @property
    def name(self) -> str:
        return f"[{self.section}] {self.key}"


def _num(value: float | None) -> str:
    if value is None:
        return "?"
    return str(int(value)) if value == int(value) else str(value)


RUN = ("run", "daemon")
DAYS = 86400         # seconds, for ranges

SECTIONS = {
    "node": "",
    "paths": "",
    "ssh": "",
    "transfer": "",
    "status": "",
    "alert": ("Run after every pass by ethoscope-backup-alert.service: one message when a device starts failing\n"
              "or goes stale (or a destination will soon be full), one when it recovers. Always in the journal\n"
              "(priority err); also by mail and to a webhook when set here. See man 5 ethoscope-backup.conf."),
    "daemon": "",
    "verify": "",
    "offsite": ("The second copy: the node's copies of results and videos sent to a restic repository the lab\n"
                "chooses (a NAS, a disk, a cloud bucket), by ethoscope-backup-offsite.timer (installed, not enabled:\n"
                "systemctl enable --now ethoscope-backup-offsite.timer once the repository exists: ethoscope-backup\n"
                "offsite --init). Needs the restic package. See man 5 ethoscope-backup.conf."),
    "devices": "",
}

SETTINGS: tuple[Setting, ...] = (
    # ---------------------------------------------------------------- [node]
    Setting("node", "server", SERVER, "localhost",
            "Node server listing the devices (GET http://SERVER/devices); HOST or HOST:PORT; empty = none (-i).",
            flags=(Flag(("-i", "--server"), RUN + ("check",), "HOST[:PORT]",
                        help="node server for discovery (GET http://HOST/devices)"),)),
    Setting("node", "discovery_timeout", FLOAT, "10.0",
            "Seconds to wait for the node server's answer (0.5 to 300).", 0.5, 300),
    Setting("node", "mdns_timeout", FLOAT, "3.0",
            "Seconds the mDNS fallback may take in all (browsing and resolving) when the node server\n"
            "cannot be reached; 0 = no fallback.", 0, 60),
    # ---------------------------------------------------------------- [paths]
    Setting("paths", "results", PATH, None,
            "Results destination on this node (absolute). Unset: upstream ethoscope.conf, else this (-r).",
            unset="/ethoscope_data/results",
            flags=(Flag(("-r", "--results-dir"), RUN, "DIR",
                        help="destination for results (default from config, else /ethoscope_data/results)"),)),
    Setting("paths", "videos", PATH, None,
            "Videos destination (absolute). Unset: upstream ethoscope.conf, else \"videos\" next to results (-v).",
            unset="/ethoscope_data/videos",
            flags=(Flag(("-v", "--videos-dir"), RUN, "DIR",
                        help="destination for videos (default from config, else next to results)"),)),
    Setting("paths", "status_file", PATH, "/run/ethoscope-backup/status.json",
            "Status document written by each pass and read by the status service (port 8093)."),
    Setting("paths", "state_dir", PATH, "/var/lib/ethoscope-backup",
            "History and pass lock, kept across reboots."),
    Setting("paths", "remote_results", REMOTE, "/ethoscope_data/results", "Results folder on the devices."),
    Setting("paths", "remote_videos", REMOTE, "/ethoscope_data/videos", "Videos folder on the devices."),
    Setting("paths", "upstream_config", PATH, "/etc/ethoscope/ethoscope.conf",
            "The upstream node's JSON configuration, read only for unset destinations; may be missing."),
    # ---------------------------------------------------------------- [ssh]
    Setting("ssh", "user", STRING, "ethoscope", "User on the devices."),
    Setting("ssh", "key", PATH, "/etc/ethoscope/keys/id_rsa",
            "Private key; under systemd the service's LoadCredential=ssh-key:... copy of it wins over this."),
    Setting("ssh", "known_hosts", PATH, "/var/lib/ethoscope-backup/known_hosts",
            "Host keys of the devices, recorded on first use (see: ethoscope-backup forget-host)."),
    Setting("ssh", "port", INTEGER, "22", "SSH port of the devices (1 to 65535).", 1, 65535),
    Setting("ssh", "host_key_policy", STRING, "accept-new",
            "accept-new: trust on first use, refuse changed keys; yes: known keys only; no: accept any (unsafe).",
            choices=("accept-new", "yes", "no")),
    Setting("ssh", "connect_timeout", INTEGER, "10", "Seconds ssh waits for a device to answer (1 to 600).", 1, 600),
    Setting("ssh", "remote_python", STRING, "python3",
            "Python interpreter on the devices running the live-database holder."),
    Setting("ssh", "ciphers", CIPHERS, "",
            "ssh ciphers to offer every device, comma-separated. Empty: chosen per device, aes128-gcm@openssh.com\n"
            "first where the node and the device both have AES instructions, chacha20-poly1305@openssh.com\n"
            "first where either lacks them (Raspberry Pi 3 and 4), ssh's own order where its CPU does not say."),
    Setting("ssh", "kex", KEX, "^curve25519-sha256,curve25519-sha256@libssh.org",
            "ssh key exchange algorithms (KexAlgorithms; a leading ^ puts them first in ssh's own list). The\n"
            "default prefers curve25519 to OpenSSH 9's post-quantum hybrid sntrup761x25519, which costs the\n"
            "node ~70 ms of CPU more per device and pass; empty: ssh's own order."),
    # ---------------------------------------------------------------- [transfer]
    Setting("transfer", "what", STRING, "unified", "What to copy: unified (results and videos), results or videos.",
            choices=("unified", "results", "videos"),
            flags=(Flag(("--unified",), RUN, const="unified", help="copy results and videos (default)"),
                   Flag(("--results-only",), RUN, const="results", help="copy only results (databases)"),
                   Flag(("--videos-only",), RUN, const="videos", help="copy only videos"))),
    Setting("transfer", "jobs", INTEGER, "16",
            "Devices backed up at once, 1 to 256 (-j); a device's own link is usually the bottleneck.", 1, 256,
            flags=(Flag(("-j", "--jobs"), RUN, "N", help="devices backed up at once"),)),
    Setting("transfer", "bwlimit", RATE, "",
            "Total bandwidth budget of all transfers: KiB/s without unit, or e.g. 800K, 10M; empty = no limit.",
            flags=(Flag(("--bwlimit",), RUN, "RATE", help="total bandwidth budget shared by all concurrent "
                                                          "transfers (e.g. 10M, KiB/s if no unit)"),)),
    Setting("transfer", "interval", FLOAT, "300.0",
            "Seconds from the end of a device's copy to the start of its next one under the timer (run\n"
            "--scheduled), each device on its own clock: a slow device never delays the others (1 to 86400).",
            1, 86400),
    Setting("transfer", "compress_results", BOOLEAN, "yes", "Compress results in transit (videos never)."),
    Setting("transfer", "io_timeout", INTEGER, "60",
            "Seconds without data after which rsync and ssh give up on a device (5 to 3600).", 5, 3600),
    Setting("transfer", "device_timeout", INTEGER, "21600",
            "Seconds one device may take in one pass, retries included (30 to 604800).", 30, 604800),
    Setting("transfer", "retries", INTEGER, "2", "Extra attempts after a transient failure (0 to 10).", 0, 10),
    Setting("transfer", "retry_delay", FLOAT, "5.0", "Seconds before the first retry, doubled before each further one.",
            0, 600),
    Setting("transfer", "min_free", SIZE, "1G",
            "Free space each destination's file system must keep (e.g. 500M, 2G); 0 = no check."),
    Setting("transfer", "safe", BOOLEAN, "no",
            "Keep old versions of replaced files under DEST/.ethoscope-backup/replaced/DATE/ (-s).",
            flags=(Flag(("-s", "--safe"), RUN, const=True,
                        help="never replace or shorten an existing file on the node: keep the old version aside"),)),
    Setting("transfer", "keep_replaced_days", FLOAT, "30",
            "Days the old versions kept by \"safe\" stay before they are removed; 0 = kept forever.", 0, 36500),
    Setting("transfer", "live_databases", BOOLEAN, "yes",
            "Consistent copies of live SQLite databases (held reader on the device, checks on the node)."),
    Setting("transfer", "database_check_timeout", FLOAT, "300.0",
            "Seconds the node may spend checking one database from a device (1 to 86400); a database that\n"
            "takes longer, or exceeds the limits set for a device's database, is \"not verified\" and the\n"
            "node keeps its previous copy.", 1, 86400),
    Setting("transfer", "database_budget", FLOAT, "600.0",
            "Seconds one device's database checks may take in all in one pass (1 to 86400); those left are\n"
            "\"not verified yet\" (the node keeps its copy) and go first in the device's next pass.", 1, 86400),
    Setting("transfer", "database_cpu_budget", FLOAT, "300.0",
            "CPU seconds of this node one device's database checks may use in one pass (1 to 86400), likewise.",
            1, 86400),
    # ---------------------------------------------------------------- [status]
    Setting("status", "listen", LISTEN, "0.0.0.0:8093",
            "ADDR:PORT the status service binds when not socket-activated (serve, daemon).",
            flags=(Flag(("--listen",), ("serve", "daemon"), "ADDR:PORT",
                        help="address to bind when not socket-activated (default from config, 0.0.0.0:8093)"),)),
    Setting("status", "cors_origin", STRING, "*", "Access-Control-Allow-Origin of the status service's answers."),
    Setting("status", "idle_exit", FLOAT, "300.0",
            "Seconds without requests after which the status service exits; 0 = never.", 0, 86400),
    Setting("status", "stale_after", FLOAT, "86400.0",
            "Seconds after the last success from which a device is reported stale.", 60, 31536000),
    Setting("status", "overdue_after", FLOAT, "1800.0",
            "Seconds without a pass ending (or a running pass writing its status) after which the node is\n"
            "reported overdue: on the page, by \"status\" (exit code 1) and by the heartbeat. Passes every\n"
            "5 minutes: 1800 flags a node that missed about five. 0 = never.", 0, 31536000),
    Setting("status", "retire_after", FLOAT, "2592000.0",
            "Seconds after which a device no pass has seen is no longer shown (status, /metrics, the page);\n"
            "its name and machine id stay pinned to its host key. 0 = never (default: 30 days).", 0, 315360000),
    Setting("status", "update_interval", FLOAT, "1.0",
            "Least seconds between two rewrites of the status file during a pass.", 0.1, 60),
    # ---------------------------------------------------------------- [alert]
    Setting("alert", "mail_to", ADDRESSES, "",
            "Mail addresses, comma-separated, in quotes; sent through sendmail (an MTA must be installed)."),
    Setting("alert", "webhook", URL, "",
            "http:// or https:// URL receiving a JSON POST (Slack, Mattermost, Matrix hookshot, ntfy, ...)."),
    Setting("alert", "webhook_format", STRING, "generic",
            "What the webhook receives: generic (a JSON document: text for Slack/Mattermost, title and message,\n"
            "the changes), slack (Slack, Mattermost, Rocket.Chat: {\"text\": ...} alone), ntfy (the message as plain\n"
            "text with Title, Priority and Tags headers: POST to https://ntfy.sh/TOPIC or your server's topic),\n"
            "healthchecks (a problem POSTs its text to WEBHOOK/fail, a recovery to WEBHOOK).",
            choices=("generic", "slack", "ntfy", "healthchecks")),
    Setting("alert", "webhook_auth_file", OPTIONAL_PATH, "",
            "A file whose first line is sent with the webhook (and ping_url) as an HTTP header: \"Name: value\",\n"
            "or a bare token sent as \"Authorization: Bearer TOKEN\" (an ntfy access token). Keep it readable by\n"
            "the ethoscope-backup user only. Empty: no header."),
    Setting("alert", "ping_url", URL, "",
            "Dead-man's switch: an http(s) URL fetched after each good pass, and by the heartbeat after each\n"
            "round of a long scheduled pass in which every device was copied (healthchecks.io, Uptime Kuma's\n"
            "push monitor, ...), so that a node that died, or stopped backing up, is noticed from outside.\n"
            "Empty: none."),
    Setting("alert", "pass_limit", FLOAT, "21600.0",
            "Seconds one device's copy may run before the heartbeat reports it (a stuck or crawling copy; a\n"
            "scheduled pass itself may run for days); 0 = never.", 0, 31536000),
    Setting("alert", "failures", INTEGER, "1",
            "Consecutive failed passes of a device before it is reported (a stale device always is).", 1, 1000),
    Setting("alert", "timeout", FLOAT, "10.0", "Seconds each channel (sendmail, webhook) may take.", 1, 120),
    Setting("alert", "disk_horizon", FLOAT, "14.0",
            "Warn when a destination would be full within this many days at its recent growth; 0 = never.", 0, 3650),
    # ---------------------------------------------------------------- [daemon]
    Setting("daemon", "interval", FLOAT, "300.0",
            "Seconds from the end of a device's copy to the start of its next one in \"ethoscope-backup daemon\",\n"
            "each device on its own clock ([transfer] interval under the timer).", 1, 86400,
            flags=(Flag(("--interval",), ("daemon",), "SECONDS",
                        help="seconds from the end of a device's copy to its next (default from config, 300)"),)),
    # ---------------------------------------------------------------- [verify]
    Setting("verify", "time_limit", FLOAT, "43200.0",
            "Seconds one \"ethoscope-backup verify\" may take (60 to 86400), shared by the devices: each gets\n"
            "its share every run, and one stopped by its share resumes where it stopped next time.", 60, DAYS),
    # ---------------------------------------------------------------- [offsite]
    Setting("offsite", "repository", REPOSITORY, "",
            "restic repository receiving the second copy: /PATH (a disk), sftp:USER@HOST:/PATH (a NAS over SSH,\n"
            "logging in with the [ssh] key), rest:https://HOST/, s3:..., b2:... (any restic repository string; a\n"
            "secret belongs in environment_file, this file is readable by everyone). Empty: no second copy."),
    Setting("offsite", "password_file", PATH, "/etc/ethoscope/keys/restic-password",
            "The repository's password (its first line), root-only; under systemd the service's\n"
            "LoadCredential=restic-password:... copy of it wins. Keep a copy elsewhere: without it the second\n"
            "copy cannot be read."),
    Setting("offsite", "environment_file", OPTIONAL_PATH, "",
            "Root-only file of NAME=VALUE lines restic's backend needs (AWS_ACCESS_KEY_ID=..., B2_ACCOUNT_KEY=...,\n"
            "RESTIC_REST_PASSWORD=...); handed over like the password (restic-environment). Empty: none."),
    Setting("offsite", "what", STRING, "unified",
            "What to send: unified (results and videos), results or videos. Never the raw database mirror,\n"
            "a partial or temporary file, or a hidden file.", choices=("unified", "results", "videos")),
    Setting("offsite", "databases", STRING, "verified",
            "verified: a database is sent once its copy on this node is verified: by the pass (every live database),\n"
            "else checked by the run itself as verify does, once (one that is not sound is held back and named);\n"
            "all: every database as it is, unchecked.",
            choices=("verified", "all")),
    Setting("offsite", "interval", FLOAT, "86400.0",
            "Seconds between two second copies (the timer looks every 15 minutes); 0 = only after_passes.",
            0, 365 * DAYS),
    Setting("offsite", "after_passes", INTEGER, "0",
            "Also send a second copy once this many passes succeeded since the last one; 0 = no.", 0, 100000),
    Setting("offsite", "keep_daily", INTEGER, "7", "Daily snapshots kept (restic forget --keep-daily).", 0, 100000),
    Setting("offsite", "keep_weekly", INTEGER, "4", "Weekly snapshots kept (--keep-weekly).", 0, 100000),
    Setting("offsite", "keep_monthly", INTEGER, "12", "Monthly snapshots kept (--keep-monthly).", 0, 100000),
    Setting("offsite", "prune_interval", FLOAT, "604800.0",
            "Seconds between two prunes of the data no kept snapshot uses (a prune rewrites part of the\n"
            "repository, which takes long on a big one); 0 = never prune.", 0, 365 * DAYS),
    Setting("offsite", "bwlimit", RATE, "",
            "Upload bandwidth of the second copy: KiB/s without unit, or e.g. 800K, 10M; empty = no limit."),
    Setting("offsite", "timeout", FLOAT, "43200.0",
            "Seconds one run may take (upload, retention, prune), 60 to 86400; an upload stopped by it goes on\n"
            "at the next run from what restic saved (it saves its index every 10 minutes).", 60, DAYS),
    Setting("offsite", "check_share", INTEGER, "12",
            "ethoscope-backup verify reads one in this many parts of the repository's data, another each time\n"
            "(every byte read once in that many verifications); 0 = check the structure only.", 0, 10000),
    Setting("offsite", "alert_after", FLOAT, "2.0",
            "Alert when the newest snapshot of the second copy is older than this many days; 0 = never.", 0, 3650),
)

BY_NAME = {(s.section, s.key): s for s in SETTINGS}
DEVICES_DOC = ("Static devices, backed up with or without a node server: ETHOSCOPE_NNN = ADDRESS (or host name).\n"
               "#ETHOSCOPE_004 = 192.168.1.104")

HEADER = """\
# /etc/ethoscope/backup.conf — configuration of ethoscope-backup (package ethoscope-rsync).
#
# Every key below is commented out and shows its built-in default: as shipped, this file
# changes nothing. To change a setting, remove the "#" in front of its key and edit the value.
# Reference: man 5 ethoscope-backup.conf. Check your changes with: ethoscope-backup check
#
# Precedence: command-line options > this file > folders.results.path / folders.video.path of
# the upstream node's /etc/ethoscope/ethoscope.conf (destinations only) > built-in defaults.
# Unknown sections or keys and invalid values are errors (exit status 2), never ignored.
"""


def _shown(setting: Setting) -> str:
    text = setting.unset if setting.default is None else setting.default
    needs_quotes = text == "" or "," in text or "#" in text or text != text.strip()
    return f'"{text}"' if needs_quotes else text


def _comment(text: str) -> list[str]:
    return ["# " + line if line else "#" for line in text.splitlines()]


def conffile() -> str:
    """The shipped /etc/ethoscope/backup.conf: every key commented out with its default."""
    lines = HEADER.splitlines()
    for section, intro in SECTIONS.items():
        lines += ["", f"[{section}]"] + (_comment(intro) if intro else [])
        if section == "devices":
            first, example = DEVICES_DOC.splitlines()
            lines += _comment(first) + [example]
        for setting in (s for s in SETTINGS if s.section == section):
            lines += _comment(setting.doc) + [f"#{setting.key} = {_shown(setting)}"]
    return "\n".join(lines) + "\n"


def main() -> None:
    """``python3 -m ethoscope_rsync.config.settings > etc/backup.conf`` regenerates the shipped file."""
    print(conffile(), end="")


if __name__ == "__main__":
    main()
