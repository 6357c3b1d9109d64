"""The simulated lab: one bridge, one network namespace + veth + sshd per fake ethoscope, a fake node server.

Everything the lab creates is recorded in a manifest (``LAB_ROOT/.manifests/NAME.json``) before it is
created, so ``Lab(name).down()`` or ``python3 -m tests.lab down --name NAME`` can remove it even after
the process that brought it up was SIGKILLed.
"""
import dataclasses
import datetime
import errno
import fcntl
import hashlib
import json
import os
import pwd
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

LAB_ROOT = Path("/var/tmp/ethoscope-lab")
MANIFESTS = LAB_ROOT / ".manifests"
PYTHON = "/usr/bin/python3"
REPO_ROOT = Path(__file__).resolve().parents[2]
DEVICE_USER = "ethoscope"
N_ROIS = 20
BASE_TIME = datetime.datetime(2024, 3, 1, 9, 0, 0)
NODE_MODES = ("ok", "garbage", "html", "http500", "truncated", "empty", "down")


def _run(argv, check=True, input=None, timeout=60):
    p = subprocess.run(argv, input=input, capture_output=True, text=True, timeout=timeout)
    if check and p.returncode != 0:
        raise RuntimeError("%s failed (%d): %s" % (" ".join(argv), p.returncode, p.stderr.strip()))
    return p


def _atomic_write(path, text, mode=0o644):
    path = Path(path)
    tmp = path.with_name(".%s.tmp%d" % (path.name, os.getpid()))
    with open(tmp, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.chmod(tmp, mode)
    os.rename(tmp, path)


def _pid_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # zombies count as gone
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _cmdline(pid):
    try:
        with open("/proc/%d/cmdline" % pid, "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def _kill_wait(pids, timeout=5.0):
    """SIGKILL the pids and wait (bounded) until they are gone."""
    pids = [p for p in set(pids) if p and p > 1 and p != os.getpid()]
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + timeout
    for pid in pids:
        while _pid_alive(pid) and time.monotonic() < deadline:
            try:  # reap our own children
                os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                pass
            time.sleep(0.01)
        try:
            os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            pass


def _netns_list():
    p = _run(["ip", "netns", "list"], check=False)
    return [line.split()[0] for line in p.stdout.splitlines() if line.strip()]


def _netns_pids(ns):
    p = _run(["ip", "netns", "pids", ns], check=False)
    return [int(x) for x in p.stdout.split() if x.isdigit()]


def _link_exists(ifname):
    return os.path.exists("/sys/class/net/%s" % ifname)


def _is_mountpoint(path):
    try:
        with open("/proc/self/mountinfo") as f:
            return any(line.split()[4] == path for line in f)
    except OSError:
        return False


def _wait_tcp(addr, port, deadline):
    while True:
        try:
            with socket.create_connection((addr, port), timeout=0.5):
                return True
        except OSError:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.02)


def _rate_bits(rate):
    units = {"kbit": 1e3, "mbit": 1e6, "gbit": 1e9, "bit": 1, "kbps": 8e3, "mbps": 8e6, "gbps": 8e9}
    r = rate.strip().lower()
    for u in sorted(units, key=len, reverse=True):
        if r.endswith(u):
            return float(r[: -len(u)]) * units[u]
    return float(r)


class _Lock:
    """A host-wide lock serialising subnet/interface allocation between concurrently starting labs."""

    def __enter__(self):
        LAB_ROOT.mkdir(parents=True, exist_ok=True)
        self.f = open(LAB_ROOT / ".lock", "w")
        fcntl.flock(self.f, fcntl.LOCK_EX)
        return self

    def __exit__(self, *exc):
        fcntl.flock(self.f, fcntl.LOCK_UN)
        self.f.close()


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


class NodeControl:
    """``lab.node``: the fake node server's behaviour, through its state file."""

    def __init__(self, lab):
        self._lab = lab
        self.mode = "ok"
        self.status = {}
        self.extra = []

    def set_mode(self, mode, timeout=10.0):
        if mode not in NODE_MODES and not mode.startswith("slow:"):
            raise ValueError("unknown node mode %r" % mode)
        if mode.startswith("slow:"):
            float(mode.split(":", 1)[1])
        was_down = self.mode == "down"
        self.mode = mode
        self._lab._write_node_state()
        host, port = self._lab.node_address.rsplit(":", 1)
        deadline = time.monotonic() + timeout
        if mode == "down":  # wait until connections are refused
            while True:
                try:
                    socket.create_connection((host, int(port)), timeout=0.5).close()
                except OSError:
                    return
                if time.monotonic() > deadline:
                    raise RuntimeError("node server did not stop listening")
                time.sleep(0.02)
        elif was_down and not _wait_tcp(host, int(port), deadline):
            raise RuntimeError("node server did not come back")

    def set_device_status(self, device, status):
        self.status[device.id] = status
        self._lab._write_node_state()

    def set_extra_entries(self, entries):
        self.extra = list(entries)
        self._lab._write_node_state()

    def devices_url(self):
        return "http://%s/devices" % self._lab.node_address


class Lab:
    def __init__(self, name="lab", n_devices=3, base_dir=None, decoys=True, node_port=80, persistent=False):
        if not name or not all(c.isalnum() or c in "-_." for c in name):
            raise ValueError("lab name must be alphanumeric (with - _ .): %r" % name)
        self.name = name
        self.n_devices = int(n_devices)
        self.base_dir = Path(base_dir) if base_dir else LAB_ROOT / name
        self.decoys = decoys
        self.node_port = node_port
        self.persistent = persistent  # CLI labs: not reaped by down_stale()
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
            d.sshd_config.write_text(self._sshd_config(d, authorized))
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

    def _new_host_key(self, d):
        for p in (d.host_key, d.host_key_pub):
            if p.exists():
                p.unlink()
        _run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", d.name, "-f", str(d.host_key)])

    @staticmethod
    def _sshd_config(d, authorized):
        return "\n".join([
            "Port 22",
            "ListenAddress %s" % d.ip,
            "HostKey %s" % d.host_key,
            "PidFile %s" % (d.dir / "sshd.pid"),
            "AuthorizedKeysFile %s" % authorized,
            "StrictModes no",
            "UsePAM no",
            "PasswordAuthentication no",
            "KbdInteractiveAuthentication no",
            "PubkeyAuthentication yes",
            "AllowUsers %s" % DEVICE_USER,
            "UseDNS no",
            "MaxStartups 100:30:200",
            "MaxSessions 64",
            "PrintMotd no",
            "Subsystem sftp internal-sftp",
            "LogLevel INFO",
            "",
        ])

    def _start_sshd(self, d):
        script = 'mount --bind "$1" /ethoscope_data && exec /usr/sbin/sshd -D -f "$2" -E "$3"'
        argv = ["ip", "netns", "exec", d.netns, "unshare", "--mount", "--pid", "--fork", "--kill-child", "--propagation", "private", "--",
                "sh", "-c", script, "sh", str(d.data_root), str(d.sshd_config), str(d.sshd_log)]
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                stderr=open(d.dir / "sshd.stderr", "ab"), start_new_session=True)
        self._procs[("sshd", d.index)] = proc
        return proc

    def _stop_sshd(self, d):
        proc = self._procs.pop(("sshd", d.index), None)
        pids = _netns_pids(d.netns)
        _kill_wait(pids + ([proc.pid] if proc else []))
        if proc:
            proc.wait(5)

    # ------------------------------------------------------------------ node server
    def _node_entry(self, d):
        dbs = {}
        results = d.data_root / "results"
        for db in sorted(results.glob("*/*/*/*.db")) if results.is_dir() else []:
            try:
                size = db.stat().st_size
            except OSError:
                continue
            dbs[db.name] = {"path": "/ethoscope_data/" + str(db.relative_to(d.data_root)), "filesize": size,
                            "backup_filename": db.name, "db_status": "tracking"}
        return {
            "id": d.id, "name": d.name, "ip": d.ip, "status": self.node.status.get(d.id, "running"),
            "time": time.time(), "last_seen": time.time(), "ping": 0, "consecutive_errors": 0,
            "version": {"id": "0" * 40, "date": "2024-01-01 00:00:00"},
            "experimental_info": {"name": "lab", "location": self.name},
            "databases": {"SQLite": dbs, "MariaDB": {}},
            "backup_path": "/ethoscope_data/results/%s/%s" % (d.id, d.name),
        }

    def _node_state(self):
        devices = {d.id: self._node_entry(d) for d in self.devices}
        if self.decoys:
            x = self.subnet
            for name, ip, status in (("ETHOSCOPE_000", x + ".250", "running"), ("ETHOSCOPE_999", x + ".251", "offline")):
                did = hashlib.md5(("ethoscope-lab-decoy:%s:%s" % (self.name, name)).encode()).hexdigest()
                devices[did] = {"id": did, "name": name, "ip": ip, "status": status, "time": time.time(),
                                "last_seen": time.time(), "databases": {"SQLite": {}, "MariaDB": {}},
                                "version": {"id": "0" * 40}, "experimental_info": {}}
        return {"mode": self.node.mode, "devices": devices, "extra": self.node.extra}

    def _write_node_state(self):
        _atomic_write(self.base_dir / "node" / "state.json", json.dumps(self._node_state()))

    def _start_node(self):
        nd = self.base_dir / "node"
        ready = nd / "port"
        if ready.exists():
            ready.unlink()
        self._write_node_state()
        argv = [PYTHON, "-m", "tests.lab.nodeserver", "--state", str(nd / "state.json"),
                "--bind", self.subnet + ".1", "--port", str(self.node_port), "--any-port", "--ready", str(ready)]
        env = dict(os.environ, PYTHONPATH=str(REPO_ROOT), PYTHONDONTWRITEBYTECODE="1")
        proc = subprocess.Popen(argv, cwd=str(REPO_ROOT), env=env, stdin=subprocess.DEVNULL,
                                stdout=subprocess.DEVNULL, stderr=open(nd / "server.log", "ab"),
                                start_new_session=True)
        self._procs[("node", 0)] = proc
        self._add_pid("node", proc.pid)
        deadline = time.monotonic() + 15
        while not ready.exists():
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("node server did not start; see %s" % (nd / "server.log"))
            time.sleep(0.02)
        self.node_address = "%s.1:%s" % (self.subnet, ready.read_text().strip())
        if not _wait_tcp(self.subnet + ".1", int(ready.read_text()), deadline):
            raise RuntimeError("node server not answering")

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

    @classmethod
    def down_all(cls):
        """Tear down every lab with a manifest, and remove every lab directory under LAB_ROOT."""
        names = []
        if MANIFESTS.is_dir():
            names = [p.stem for p in MANIFESTS.glob("*.json")]
        for name in names:
            try:
                m = json.loads((MANIFESTS / (name + ".json")).read_text())
            except (OSError, ValueError):
                m = None
            _teardown(m, name)
        # leftovers without manifest (interfaces named by our scheme)
        for ns in _netns_list():
            if ns.startswith("elab-"):
                _kill_wait(_netns_pids(ns))
                _run(["ip", "netns", "del", ns], check=False)
        for ifname in os.listdir("/sys/class/net"):
            if ifname.startswith("elb") and len(ifname) == 7:
                _run(["ip", "link", "del", ifname], check=False)
        if LAB_ROOT.is_dir():
            for p in LAB_ROOT.iterdir():
                if p.is_dir() and not p.name.startswith("."):
                    shutil.rmtree(p, ignore_errors=True)
        _maybe_unmount_netns()
        return names

    @classmethod
    def down_stale(cls):
        """Tear down labs whose owning (test) process is dead. CLI labs (persistent) are left alone."""
        gone = []
        if not MANIFESTS.is_dir():
            return gone
        for p in MANIFESTS.glob("*.json"):
            try:
                m = json.loads(p.read_text())
            except (OSError, ValueError):
                continue
            owner = m.get("owner_pid")
            if owner and not _pid_alive(owner):
                _teardown(m, p.stem)
                gone.append(p.stem)
        return gone

    @staticmethod
    def list_labs():
        out = []
        if MANIFESTS.is_dir():
            for p in sorted(MANIFESTS.glob("*.json")):
                try:
                    m = json.loads(p.read_text())
                except (OSError, ValueError):
                    continue
                alive = [ns for ns in m.get("netns", []) if os.path.exists("/run/netns/" + ns)]
                out.append({"name": m.get("name"), "subnet": m.get("subnet"), "bridge": m.get("bridge"),
                            "devices": len(m.get("netns", [])), "netns_alive": len(alive),
                            "bridge_alive": _link_exists(m.get("bridge", "-")),
                            "owner_pid": m.get("owner_pid"), "base_dir": m.get("base_dir"),
                            "summary": os.path.join(m.get("base_dir", ""), "lab.json")})
        return out

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

    # ------------------------------------------------------------------ data
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

    # ------------------------------------------------------------------ faults
    def cut_link(self, device):
        _run(["ip", "link", "set", device.veth, "down"], check=False)
        _run(["ip", "-n", device.netns, "link", "set", "eth0", "down"], check=False)

    def restore_link(self, device):
        _run(["ip", "-n", device.netns, "link", "set", "eth0", "up"])
        _run(["ip", "link", "set", device.veth, "up"])

    def rate_limit(self, device, rate="40mbit", burst=None, latency="400ms"):
        if burst is None:  # ~10 ms worth of data, at least 32 kbit
            burst = "%dkbit" % max(32, int(_rate_bits(rate) / 100 / 1000))
        args = ["root", "tbf", "rate", rate, "burst", burst, "latency", latency]
        _run(["tc", "qdisc", "replace", "dev", device.veth] + args)
        _run(["ip", "netns", "exec", device.netns, "tc", "qdisc", "replace", "dev", "eth0"] + args)

    def clear_rate_limit(self, device):
        _run(["tc", "qdisc", "del", "dev", device.veth, "root"], check=False)
        _run(["ip", "netns", "exec", device.netns, "tc", "qdisc", "del", "dev", "eth0", "root"], check=False)

    def regenerate_host_key(self, device):
        self._stop_sshd(device)
        self._new_host_key(device)
        self._start_sshd(device)
        if not _wait_tcp(device.ip, 22, time.monotonic() + 15):
            raise RuntimeError("sshd of %s did not restart" % device.name)
        self._write_summary()

    def stop_device(self, device):
        """The device vanishes: its sshd (and every session) is killed and its link goes down."""
        self._stop_sshd(device)
        self.cut_link(device)

    def start_device(self, device):
        """Undo stop_device(): link up, sshd started again (same host key)."""
        self.restore_link(device)
        if not _netns_pids(device.netns):
            self._start_sshd(device)
        if not _wait_tcp(device.ip, 22, time.monotonic() + 15):
            raise RuntimeError("sshd of %s did not restart" % device.name)

    # ------------------------------------------------------------------ mDNS
    def announce_mdns(self, port=9000, timeout=30.0):
        """Announce ``_ethoscope._tcp.local.`` for every device, from a separate process bound to the bridge
        address (python3-zeroconf). Returns that process's pid; ``down()`` kills it."""
        ready = self.base_dir / "node" / "mdns.ready"
        if ready.exists():
            ready.unlink()
        self._write_summary()
        argv = [PYTHON, "-m", "tests.lab.mdns", "--bind", self.subnet + ".1", "--lab-json",
                str(self.base_dir / "lab.json"), "--ready", str(ready), "--port", str(port)]
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


# ---------------------------------------------------------------------- helpers
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


def _maybe_unmount_netns():
    if _netns_list():
        return
    for _ in range(8):
        if not _is_mountpoint("/run/netns"):
            break
        if _run(["umount", "/run/netns"], check=False).returncode != 0:
            break


def _teardown(m, name, keep_data=False, base_dir=None):
    """Remove what a manifest (or the naming scheme for NAME) describes; every step tolerates absence."""
    if m:
        h = m.get("hash")
        netns = list(m.get("netns", []))
        bridge = m.get("bridge")
        base_dir = Path(m.get("base_dir") or base_dir or LAB_ROOT / name)
        pids = []
        for kind in ("node", "writers"):
            for pid in m.get("pids", {}).get(kind, []):
                if "tests.lab" in _cmdline(pid):
                    pids.append(pid)
        _kill_wait(pids)
    else:
        h, netns, bridge = None, [], None
        base_dir = Path(base_dir or LAB_ROOT / name)
    if h:  # also anything named by the scheme that the manifest might not list
        netns = sorted(set(netns) | {n for n in _netns_list() if n.startswith("elab-%s-" % h)})
    existing = set(_netns_list())
    netns = [n for n in netns if n in existing]
    all_pids = []
    for ns in netns:
        all_pids += _netns_pids(ns)
    _kill_wait(all_pids)
    veths = [v for v in (m or {}).get("veths", []) if _link_exists(v)]
    if veths:
        _run(["ip", "-force", "-batch", "-"], check=False, input="".join("link del %s\n" % v for v in veths))
    if netns:
        _run(["ip", "-force", "-batch", "-"], check=False, input="".join("netns del %s\n" % n for n in netns))
    if bridge and _link_exists(bridge):
        _run(["ip", "link", "del", bridge], check=False)
    looks_like_lab = any((base_dir / p).exists() for p in ("keys", "devices", "node", "lab.json"))
    if not keep_data and looks_like_lab:
        shutil.rmtree(base_dir, ignore_errors=True)
    mp = MANIFESTS / ("%s.json" % name)
    if mp.exists():
        mp.unlink()
    _maybe_unmount_netns()
