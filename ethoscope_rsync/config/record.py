"""The ``Config`` record: backup.conf validated, nested like the file (``config.transfer.jobs``), plus
what a command line adds (the device selection, a dry run, debug). Immutable: built once by
:func:`ethoscope_rsync.config.load.load_config`, changed only into a new record by :meth:`Config.changed`.

The sections' fields are the settings table's keys with its types (settings.py); a test checks the
two agree, and no default is written here.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from ethoscope_rsync.config.devices import Device
from ethoscope_rsync.config.syntax import Endpoint, Repository


@dataclasses.dataclass(frozen=True)
class Node:
    server: Endpoint | None            # None: no node server
    discovery_timeout: float
    mdns_timeout: float


@dataclasses.dataclass(frozen=True)
class Paths:
    results: Path                      # resolved: the file, else the upstream node's ethoscope.conf, else the default
    videos: Path
    status_file: Path
    state_dir: Path
    remote_results: str
    remote_videos: str
    upstream_config: Path


@dataclasses.dataclass(frozen=True)
class Ssh:
    user: str
    key: Path
    known_hosts: Path
    port: int
    host_key_policy: str
    connect_timeout: int
    remote_python: str
    ciphers: str
    kex: str


@dataclasses.dataclass(frozen=True)
class Transfer:
    what: str
    jobs: int
    bwlimit: int                       # KiB/s, 0: no limit
    interval: float                    # seconds from a device's copy's end to its next (run --scheduled)
    compress_results: bool
    io_timeout: int
    device_timeout: int
    retries: int
    retry_delay: float
    min_free: int                      # bytes
    safe: bool
    keep_replaced_days: float
    live_databases: bool
    database_check_timeout: float
    database_budget: float             # seconds of a device's database checks in one pass
    database_cpu_budget: float         # CPU seconds of them


@dataclasses.dataclass(frozen=True)
class Status:
    listen: Endpoint
    cors_origin: str
    idle_exit: float
    stale_after: float
    overdue_after: float
    retire_after: float
    update_interval: float


@dataclasses.dataclass(frozen=True)
class Alert:
    mail_to: tuple
    webhook: str
    webhook_format: str
    webhook_auth_file: Path | None
    ping_url: str
    pass_limit: float
    failures: int
    timeout: float
    disk_horizon: float


@dataclasses.dataclass(frozen=True)
class Daemon:
    interval: float


@dataclasses.dataclass(frozen=True)
class Verify:
    time_limit: float                  # seconds one verify run may take, shared fairly by the devices


@dataclasses.dataclass(frozen=True)
class Offsite:
    repository: Repository | None      # None: no second copy
    password_file: Path
    environment_file: Path | None
    what: str
    databases: str
    interval: float                    # seconds
    after_passes: int
    keep_daily: int
    keep_weekly: int
    keep_monthly: int
    prune_interval: float              # seconds
    bwlimit: int                       # KiB/s, 0: no limit
    timeout: float                     # seconds
    check_share: int
    alert_after: float                 # days


SECTION_RECORDS = {"node": Node, "paths": Paths, "ssh": Ssh, "transfer": Transfer, "status": Status,
                   "alert": Alert, "daemon": Daemon, "verify": Verify, "offsite": Offsite}
# "": none of them (the node's switches that are on ask for no configured tree, see switches.py)
KIND_TREES = {"unified": ("results", "videos"), "results": ("results",), "videos": ("videos",), "": ()}


@dataclasses.dataclass(frozen=True)
class Config:
    """Everything a command needs, validated; never mutated."""
    source: str                        # the file read (or its default path when it does not exist)
    node: Node
    paths: Paths
    ssh: Ssh
    transfer: Transfer
    status: Status
    alert: Alert
    daemon: Daemon
    verify: Verify
    offsite: Offsite
    devices: tuple[Device, ...]        # [devices]: static devices
    selection: tuple = ()              # -e: device numbers (int) and machine ids (str); () = all
    dry_run: bool = False
    debug: bool = False

    def changed(self, **sections: Any) -> Config:
        """A new Config: ``changed(transfer={"jobs": 4}, dry_run=True)``."""
        changes = {name: dataclasses.replace(getattr(self, name), **value) if isinstance(value, dict) else value
                   for name, value in sections.items()}
        return dataclasses.replace(self, **changes)

    @property
    def history_file(self) -> Path:
        return self.paths.state_dir / "history.json"

    @property
    def inventory_file(self) -> Path:
        return self.paths.state_dir / "inventory.sqlite"

    @property
    def lock_file(self) -> Path:
        return self.paths.state_dir / "lock"

    @property
    def alerts_file(self) -> Path:
        return self.paths.state_dir / "alerts.json"

    @property
    def pauses_file(self) -> Path:
        """The devices the admin paused (written by ``pause`` and ``resume``)."""
        return self.paths.state_dir / "paused.json"

    @property
    def verify_file(self) -> Path:
        return self.paths.state_dir / "verify.json"

    @property
    def offsite_file(self) -> Path:
        """The second copy's state (written by ``offsite``, read by the status tools and the alerts)."""
        return self.paths.state_dir / "offsite.json"

    def kinds(self) -> tuple[str, ...]:
        """The trees this pass copies, in order: results before videos."""
        return KIND_TREES[self.transfer.what]

    def destination(self, kind: str) -> Path:
        return self.paths.results if kind == "results" else self.paths.videos

    def remote_root(self, kind: str) -> str:
        return self.paths.remote_results if kind == "results" else self.paths.remote_videos
