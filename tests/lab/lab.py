"""The simulated lab: one bridge, one network namespace + veth + sshd per fake ethoscope, a fake node server.

Everything the lab creates is recorded in a manifest (``LAB_ROOT/.manifests/NAME.json``) before it is
created, so ``Lab(name).down()`` or ``python3 -m tests.lab down --name NAME`` can remove it even after
the process that brought it up was SIGKILLed.

``Lab`` is assembled from one module per concern: system.py (processes, netns, host lock), data.py
(experiments on a device), node.py (the fake node server), devices.py (sshd and faults), teardown.py
(removing labs from their manifests). The names other code imports from here are re-exported.
"""
import dataclasses
import hashlib
import json
import os
import pwd
import shutil
import signal
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from .data import BASE_TIME, N_ROIS, LabData, _make_db, _random_file  # noqa: F401 (re-exported)
from .devices import DeviceOps
from .node import NODE_MODES, NodeControl, NodeServer  # noqa: F401 (re-exported)
from .system import (DEVICE_USER, LAB_ROOT, MANIFESTS, PYTHON, REPO_ROOT, _atomic_write,  # noqa: F401
                     _cmdline, _is_mountpoint, _kill_wait, _link_exists, _Lock, _netns_list, _netns_pids,
                     _pid_alive, _rate_bits, _run, _wait_tcp)
from .teardown import LabRegistry, _maybe_unmount_netns, _teardown  # noqa: F401 (re-exported)


@dataclasses.dataclass
class LabDevice:
    index: int
    id: str
    name: str
    ip: str
    netns: str
    veth: str
    data_root: Path
    host_key_pub: Path
    dir: Path = dataclasses.field(repr=False, default=None)  # per-device lab files (sshd config, keys, log)

    @property
    def host_key(self):
        return self.dir / "ssh_host_ed25519_key"

    @property
    def sshd_config(self):
        return self.dir / "sshd_config"

    @property
    def sshd_log(self):
        return self.dir / "sshd.log"


class LiveWriter:
    """Handle on a writer process (see tests/lab/writer.py)."""

    def __init__(self, lab, proc, db_path, counter_path):
        self._lab = lab
        self._proc = proc
        self.db_path = Path(db_path)
        self.counter_path = Path(counter_path)
        self.pid = proc.pid

    def committed_rows(self):
        try:
            return int(self.counter_path.read_text().strip() or 0)
        except (OSError, ValueError):
            return 0

    def running(self):
        return self._proc.poll() is None

    def stop(self, timeout=10.0):
        if self._proc.poll() is None:
            self._proc.send_signal(signal.SIGTERM)
            try:
                self._proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait(5)
        self._lab._forget_pid("writers", self.pid)
        return self.committed_rows()


class Lab(LabData, NodeServer, DeviceOps, LabRegistry):
    def __init__(self, name="lab", n_devices=3, base_dir=None, decoys=True, node_port=80, persistent=False,
                 without_aes=(), sshd_log_level="INFO"):
        if not name or not all(c.isalnum() or c in "-_." for c in name):
            raise ValueError("lab name must be alphanumeric (with - _ .): %r" % name)
        self.name = name
        self.n_devices = int(n_devices)
        self.base_dir = Path(base_dir) if base_dir else LAB_ROOT / name
        self.decoys = decoys
        self.node_port = node_port
        self.persistent = persistent  # CLI labs: not reaped by down_stale()
        self.without_aes = frozenset(without_aes)   # device indexes whose CPU says it has no AES instructions
        self.sshd_log_level = sshd_log_level        # DEBUG1: each connection's cipher in the device's sshd.log
        self.manifest_path = MANIFESTS / ("%s.json" % name)
        self.node = NodeControl(self)
        self._procs = {}
        self._manifest = None
        self.devices = []
        self.subnet = None
        self.node_address = None
        self.key_path = self.base_dir / "keys" / "id_ed25519"
        self._h = None

    # ------------------------------------------------------------------ context manager
    def __enter__(self):
        self.up()
        return self

    def __exit__(self, *exc):
        self.down()

    # ------------------------------------------------------------------ manifest
    def _save_manifest(self):
        MANIFESTS.mkdir(parents=True, exist_ok=True)
        _atomic_write(self.manifest_path, json.dumps(self._manifest, indent=1))

    def _forget_pid(self, kind, pid):
        if self._manifest and pid in self._manifest["pids"].get(kind, []):
            self._manifest["pids"][kind].remove(pid)
            self._save_manifest()

    def _add_pid(self, kind, pid):
        self._manifest["pids"].setdefault(kind, []).append(pid)
        self._save_manifest()

    # ------------------------------------------------------------------ naming
    def _pick_hash(self):
        k = 0
        while True:
            seed = self.name if k == 0 else "%s#%d" % (self.name, k)
            h = hashlib.sha1(seed.encode()).hexdigest()[:4]
            if not _link_exists("elb" + h) and not any(n.startswith("elab-%s-" % h) for n in _netns_list()):
                return h
            k += 1

    @staticmethod
    def _used_subnets():
        used = set()
        p = _run(["ip", "-4", "-o", "addr", "show"], check=False)
        for line in p.stdout.split():
            if line.startswith("169.254."):
                used.add(int(line.split(".")[2]))
        if MANIFESTS.is_dir():
            for m in MANIFESTS.glob("*.json"):
                try:
                    used.add(int(json.loads(m.read_text())["subnet"].split(".")[2]))
                except (OSError, ValueError, KeyError, IndexError, AttributeError, TypeError):
                    pass
        return used

    def _pick_subnet(self):
        used = self._used_subnets()
        start = int(hashlib.sha1(self.name.encode()).hexdigest(), 16) % 100
        for k in range(100):
            x = 100 + (start + k) % 100
            if x not in used:
                return x
        raise RuntimeError("no free 169.254.X.0/24 subnet in 100..199")

    def _make_devices(self, h, x):
        devs = []
        for i in range(1, self.n_devices + 1):
            d = self.base_dir / "devices" / ("%03d" % i)
            devs.append(LabDevice(
                index=i,
                id=hashlib.md5(("ethoscope-lab:%s:%d" % (self.name, i)).encode()).hexdigest(),
                name="ETHOSCOPE_%03d" % i,
                ip="169.254.%d.%d" % (x, 10 + i),
                netns="elab-%s-%d" % (h, i),
                veth="el%sv%d" % (h, i),
                data_root=d / "ethoscope_data",
                host_key_pub=d / "ssh_host_ed25519_key.pub",
                dir=d,
            ))
        return devs

    # ------------------------------------------------------------------ up
    def up(self, timeout=60.0):
        if self.n_devices < 0 or self.n_devices > 238:
            raise ValueError("n_devices must be within 0..238 (.11-.248; .250/.251 are the decoys)")
        t0 = time.monotonic()
        self.down()
        try:
            self._up(t0 + timeout)
        except BaseException:
            self.down()
            raise
        return self

    def _up(self, deadline):
        pw = pwd.getpwnam(DEVICE_USER)
        LAB_ROOT.mkdir(parents=True, exist_ok=True)
        os.chmod(LAB_ROOT, 0o755)
        with _Lock():
            h = self._pick_hash()
            x = self._pick_subnet()
            self._h = h
            self.subnet = "169.254.%d" % x
            bridge = "elb" + h
            self.devices = self._make_devices(h, x)
            self._manifest = {
                "name": self.name, "base_dir": str(self.base_dir), "hash": h, "subnet": self.subnet,
                "bridge": bridge, "netns": [d.netns for d in self.devices], "veths": [d.veth for d in self.devices],
                "pids": {"node": [], "writers": []},
                "owner_pid": None if self.persistent else os.getpid(), "created": time.time(),
            }
            self._save_manifest()
            batch = ["link add %s type bridge" % bridge,
                     "addr add %s.1/24 dev %s" % (self.subnet, bridge),
                     "link set %s up" % bridge]
            for d in self.devices:
                batch += ["netns add %s" % d.netns,
                          "link add %s type veth peer name eth0 netns %s" % (d.veth, d.netns),
                          "link set %s master %s up" % (d.veth, bridge)]
            _run(["ip", "-batch", "-"], input="\n".join(batch) + "\n")

        # files: lab key, per-device host keys, configs, data trees
        self.base_dir.mkdir(parents=True, exist_ok=True)
        os.chmod(self.base_dir, 0o755)
        keys = self.base_dir / "keys"
        keys.mkdir(exist_ok=True)
        os.chmod(keys, 0o755)
        _run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "ethoscope-lab-%s" % self.name,
              "-f", str(self.key_path)])
        os.chmod(self.key_path, 0o600)
        authorized = keys / "authorized_keys"
        shutil.copyfile(str(self.key_path) + ".pub", authorized)
        os.chmod(authorized, 0o644)
        for sub in ("writers", "node"):
            (self.base_dir / sub).mkdir(exist_ok=True)
        os.chown(self.base_dir / "writers", pw.pw_uid, pw.pw_gid)

        def prepare(d):
            d.dir.mkdir(parents=True, exist_ok=True)
            for sub in ("", "results", "videos"):
                p = d.data_root / sub
                p.mkdir(parents=True, exist_ok=True)
                os.chown(p, pw.pw_uid, pw.pw_gid)
            self._new_host_key(d)
            (d.dir / "machine-id").write_text(d.id + "\n")
            d.sshd_config.write_text(self._sshd_config(d, authorized, self.sshd_log_level))
            _run(["ip", "-n", d.netns, "-batch", "-"],
                 input="link set lo up\naddr add %s/24 dev eth0\nlink set eth0 up\n" % d.ip)

        with ThreadPoolExecutor(max_workers=8) as ex:
            list(ex.map(prepare, self.devices))

        os.makedirs("/run/sshd", exist_ok=True)
        os.makedirs("/ethoscope_data", exist_ok=True)
        for d in self.devices:
            self._start_sshd(d)
        self._start_node()
        for d in self.devices:
            if not _wait_tcp(d.ip, 22, deadline):
                raise RuntimeError("sshd of %s (%s) did not start; see %s" % (d.name, d.ip, d.sshd_log))
        self._write_summary()

    # ------------------------------------------------------------------ down
    def down(self, keep_data=False):
        """Remove everything this lab (or a stale lab of the same name) created. Never raises for gone parts."""
        m = self._manifest
        if m is None and self.manifest_path.exists():
            try:
                m = json.loads(self.manifest_path.read_text())
            except (OSError, ValueError):
                m = None
        _teardown(m, self.name, keep_data=keep_data, base_dir=self.base_dir)
        for proc in self._procs.values():
            try:
                proc.wait(0.5)
            except Exception:
                pass
        self._procs.clear()
        self._manifest = None

    # ------------------------------------------------------------------ summary / config
    def summary(self):
        return {
            "name": self.name, "base_dir": str(self.base_dir), "subnet": self.subnet,
            "node_address": self.node_address, "key_path": str(self.key_path),
            "devices": [{"index": d.index, "id": d.id, "name": d.name, "ip": d.ip, "netns": d.netns,
                         "veth": d.veth, "data_root": str(d.data_root), "host_key_pub": str(d.host_key_pub)}
                        for d in self.devices],
        }

    def _write_summary(self):
        _atomic_write(self.base_dir / "lab.json", json.dumps(self.summary(), indent=1))

    def known_hosts_text(self):
        """known_hosts lines for all devices' current host keys."""
        lines = []
        for d in self.devices:
            typ, key = d.host_key_pub.read_text().split()[:2]
            lines.append("%s %s %s" % (d.ip, typ, key))
        return "\n".join(lines) + "\n"

    def config_text(self, results_dir, videos_dir, status_file, state_dir, known_hosts):
        return ("[node]\nserver = %s\n[paths]\nresults = %s\nvideos = %s\nstatus_file = %s\nstate_dir = %s\n"
                "[ssh]\nuser = %s\nkey = %s\nknown_hosts = %s\n" % (
                    self.node_address, results_dir, videos_dir, status_file, state_dir,
                    DEVICE_USER, self.key_path, known_hosts))

    def ssh_argv(self, device, *command, known_hosts="/dev/null", connect_timeout=5):
        """argv for running COMMAND on DEVICE as user ethoscope with the lab key (host key not checked)."""
        return ["ssh", "-i", str(self.key_path), "-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes",
                "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=%s" % known_hosts,
                "-o", "LogLevel=ERROR", "-o", "ConnectTimeout=%d" % connect_timeout,
                "%s@%s" % (DEVICE_USER, device.ip), "--"] + list(command)

    def start_writer(self, device, db_path=None, interval=0.02, rows_per_commit=10):
        if db_path is None:
            db_path = self.newest_db(device)
            if db_path is None:
                self.populate(device, experiments=1, db_rows=0, video_chunks=0, mp4=False)
                db_path = self.newest_db(device)
        db_path = Path(db_path)
        pw = pwd.getpwnam(DEVICE_USER)
        wdir = self.base_dir / "writers"
        counter = wdir / ("%s-%d.count" % (device.name, len(list(wdir.glob("*.count")))))
        argv = [PYTHON, "-m", "tests.lab.writer", "--db", str(db_path), "--counter", str(counter),
                "--interval", str(interval), "--rows-per-commit", str(rows_per_commit)]
        env = dict(os.environ, PYTHONPATH=str(REPO_ROOT), PYTHONDONTWRITEBYTECODE="1")
        proc = subprocess.Popen(argv, cwd=str(REPO_ROOT), env=env, user=pw.pw_uid, group=pw.pw_gid,
                                extra_groups=[], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                stderr=open(wdir / (counter.name + ".log"), "ab"), start_new_session=True)
        self._procs[("writer", proc.pid)] = proc
        self._add_pid("writers", proc.pid)
        w = LiveWriter(self, proc, db_path, counter)
        deadline = time.monotonic() + 15
        while not counter.exists():
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("writer did not start; see %s.log" % counter)
            time.sleep(0.01)
        return w

    # ------------------------------------------------------------------ mDNS
    def announce_mdns(self, port=9000, timeout=30.0, services=None):
        """Announce ``_ethoscope._tcp.local.`` for every device (or for `services`, a list of
        ``{"name", "id", "ip"}``), from a separate process bound to the bridge address
        (python3-zeroconf). Returns that process's pid; ``down()`` kills it."""
        ready = self.base_dir / "node" / "mdns.ready"
        if ready.exists():
            ready.unlink()
        self._write_summary()
        argv = [PYTHON, "-m", "tests.lab.mdns", "--bind", self.subnet + ".1", "--lab-json",
                str(self.base_dir / "lab.json"), "--ready", str(ready), "--port", str(port)]
        if services is not None:
            listed = self.base_dir / "node" / ("mdns-services-%d.json" % time.monotonic_ns())
            _atomic_write(listed, json.dumps(list(services)))
            argv += ["--services", str(listed)]
        env = dict(os.environ, PYTHONPATH=str(REPO_ROOT), PYTHONDONTWRITEBYTECODE="1")
        proc = subprocess.Popen(argv, cwd=str(REPO_ROOT), env=env, stdin=subprocess.DEVNULL,
                                stdout=subprocess.DEVNULL, stderr=open(self.base_dir / "node" / "mdns.log", "ab"),
                                start_new_session=True)
        self._procs[("mdns", proc.pid)] = proc
        self._add_pid("node", proc.pid)
        deadline = time.monotonic() + timeout
        while not ready.exists():
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("mDNS announcer did not start; see %s" % (self.base_dir / "node" / "mdns.log"))
            time.sleep(0.05)
        return proc.pid
