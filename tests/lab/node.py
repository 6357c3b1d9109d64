"""The fake node server: ``lab.node`` (NodeControl) and the state file the server process reads."""
import hashlib
import json
import os
import socket
import subprocess
import time

from .system import PYTHON, REPO_ROOT, _atomic_write, _wait_tcp

NODE_MODES = ("ok", "garbage", "html", "http500", "truncated", "empty", "down",
              "banner", "headers", "longheader", "chunked-truncated", "nested", "redirect", "drip")


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


class NodeServer:
    """``Lab`` methods that write the node server's state and start it."""

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
            for name, ip, status in (("ETHOSCOPE_000", x + ".250", "running"),
                                     ("ETHOSCOPE_999", x + ".251", "offline")):
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
