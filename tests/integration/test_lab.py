"""The simulated lab itself: devices, node server, faults, live writer, teardown."""
import json
import os
import pwd
import re
import signal
import sqlite3
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.lab import Lab
from tests.lab.lab import MANIFESTS, REPO_ROOT, _netns_list, _pid_alive
from tests.polling import wait_for

PY = "/usr/bin/python3"


def ssh(lab, device, *cmd, timeout=30, **kw):
    return subprocess.run(lab.ssh_argv(device, *cmd, **kw), capture_output=True, text=True, timeout=timeout)


def get(url, timeout=10):
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return r.status, r.headers.get("Content-Type", ""), r.read()


# ---------------------------------------------------------------------- devices and data
def test_each_device_serves_its_own_tree(lab):
    d1, d2 = lab.devices
    assert oct(lab.key_path.stat().st_mode & 0o777) == "0o600"
    assert d1.id != d2.id and re.fullmatch(r"[0-9a-f]{32}", d1.id)
    assert (d1.name, d2.name) == ("ETHOSCOPE_001", "ETHOSCOPE_002")
    assert d1.ip == lab.subnet + ".11" and lab.subnet.startswith("169.254.")
    r1 = ssh(lab, d1, "id -un; ls /ethoscope_data/results")
    r2 = ssh(lab, d2, "id -un; ls /ethoscope_data/results")
    assert r1.returncode == 0, r1.stderr
    assert r2.returncode == 0, r2.stderr
    assert r1.stdout.split() == ["ethoscope", d1.id]
    assert r2.stdout.split() == ["ethoscope", d2.id]
    (d1.data_root / "only-on-1.txt").write_text("one\n")
    assert ssh(lab, d1, "cat /ethoscope_data/only-on-1.txt").stdout == "one\n"
    assert ssh(lab, d2, "cat /ethoscope_data/only-on-1.txt").returncode != 0


def test_populate_layout_and_database(lab):
    d = lab.devices[0]
    paths = lab.populate(d, experiments=1, db_rows=300, video_chunks=3, chunk_bytes=32 << 10, mp4=True)
    db = [p for p in paths if p.endswith(".db")]
    chunks = [p for p in paths if p.endswith(".h264")]
    assert len(db) == 1 and len(chunks) == 3
    assert any(p.endswith(".mp4") for p in paths) and any(p.endswith(".mp4.md5") for p in paths)
    ts = r"\d{4}-\d\d-\d\d_\d\d-\d\d-\d\d"
    assert re.fullmatch(r"results/%s/%s/(%s)/\1_%s\.db" % (d.id, d.name, ts, d.id), db[0])
    for c in chunks:
        assert re.fullmatch(r"videos/%s/%s/(%s)/\1_%s_.*_\d{5}\.h264" % (d.id, d.name, ts, d.id), c)
        assert (d.data_root / c).stat().st_size == 32 << 10
        assert (d.data_root / c).stat().st_uid == pwd.getpwnam("ethoscope").pw_uid
    con = sqlite3.connect(str(d.data_root / db[0]))
    assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    tables = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert {"METADATA", "ROI_MAP", "VAR_MAP", "ROI_1", "ROI_20"} <= tables
    rows = sum(con.execute("SELECT count(*) FROM ROI_%d" % i).fetchone()[0] for i in range(1, 21))
    assert rows == 300
    assert dict(con.execute("SELECT field, value FROM METADATA"))["machine_id"] == d.id
    con.close()
    # a second call makes a new, later experiment; names are deterministic in call order
    again = lab.populate(d, experiments=1, db_rows=0, video_chunks=1, chunk_bytes=1024, mp4=False)
    assert sorted([db[0], again[0]]) == [db[0], again[0]] and again[0] != db[0]
    # incompressible chunks
    import zlib
    raw = (d.data_root / chunks[0]).read_bytes()
    assert len(zlib.compress(raw)) > 0.99 * len(raw)
    chunk = lab.add_video_chunk(d, 5000)
    assert chunk.stat().st_size == 5000 and chunk.name.endswith("_00001.h264")
    assert chunk.parent.name == again[1].split("/")[3]


# ---------------------------------------------------------------------- node server
def test_node_devices_upstream_format(lab):
    status, ctype, body = get("http://%s/devices" % lab.node_address)
    assert status == 200 and "json" in ctype
    data = json.loads(body)
    for d in lab.devices:
        e = data[d.id]
        assert (e["id"], e["name"], e["ip"], e["status"]) == (d.id, d.name, d.ip, "running")
        assert set(e["databases"]) == {"SQLite", "MariaDB"}
        assert len(e["databases"]["SQLite"]) == 1
    decoys = [e for k, e in data.items() if k not in {d.id for d in lab.devices}]
    assert {e["name"] for e in decoys if e["status"] != "offline"} == {"ETHOSCOPE_000"}
    assert any(e["status"] == "offline" for e in decoys)
    lab.node.set_device_status(lab.devices[1], "offline")
    lab.node.set_extra_entries([{"id": "../../etc", "name": "ETHOSCOPE_1; rm -rf /", "ip": "8.8.8.8"}])
    data = json.loads(get("http://%s/devices" % lab.node_address)[2])
    assert data[lab.devices[1].id]["status"] == "offline"
    assert data[lab.devices[0].id]["status"] == "running"
    assert any(e.get("name") == "ETHOSCOPE_1; rm -rf /" for e in data.values())


def test_node_without_decoys(make_lab):
    lab = make_lab(n_devices=1, decoys=False)
    data = json.loads(get("http://%s/devices" % lab.node_address)[2])
    assert list(data) == [lab.devices[0].id]


def test_node_modes_misbehave(lab):
    url = "http://%s/devices" % lab.node_address
    ok_body = get(url)[2]

    lab.node.set_mode("garbage")
    status, _, body = get(url)
    assert status == 200 and body != ok_body
    with pytest.raises(ValueError):
        json.loads(body)

    lab.node.set_mode("html")
    status, ctype, body = get(url)
    assert status == 200 and "text/html" in ctype and body.lstrip().startswith(b"<")

    lab.node.set_mode("http500")
    with pytest.raises(urllib.error.HTTPError) as e:
        get(url)
    assert e.value.code == 500

    lab.node.set_mode("truncated")
    status, _, body = get(url)
    assert status == 200 and 0 < len(body) < len(ok_body)
    with pytest.raises(ValueError):
        json.loads(body)

    lab.node.set_mode("empty")
    assert json.loads(get(url)[2]) == {}

    lab.node.set_mode("slow:1.5")
    with pytest.raises(OSError):  # socket.timeout / URLError
        get(url, timeout=0.3)
    assert json.loads(get(url, timeout=20)[2])

    lab.node.set_mode("down")
    with pytest.raises(urllib.error.URLError) as e:
        get(url, timeout=5)
    assert isinstance(e.value.reason, ConnectionRefusedError)

    lab.node.set_mode("ok")
    assert json.loads(get(url)[2]).keys() == json.loads(ok_body).keys()
    with pytest.raises(ValueError):
        lab.node.set_mode("nonsense")


# ---------------------------------------------------------------------- faults
def test_cut_link_and_restore(lab):
    d = lab.devices[0]
    assert ssh(lab, d, "true").returncode == 0
    lab.cut_link(d)
    t0 = time.monotonic()
    r = ssh(lab, d, "true", connect_timeout=2, timeout=20)
    assert r.returncode != 0
    assert time.monotonic() - t0 < 15
    assert ssh(lab, lab.devices[1], "true").returncode == 0  # the other device is unaffected
    lab.restore_link(d)
    wait_for(lambda: ssh(lab, d, "true", connect_timeout=2).returncode == 0, what="link restored")


def test_rate_limit_applies_tbf(lab):
    d = lab.devices[0]
    lab.rate_limit(d, "40mbit")
    host = subprocess.run(["tc", "qdisc", "show", "dev", d.veth], capture_output=True, text=True).stdout
    inner = subprocess.run(["ip", "netns", "exec", d.netns, "tc", "qdisc", "show", "dev", "eth0"],
                           capture_output=True, text=True).stdout
    for out in (host, inner):
        assert "tbf" in out and "rate 40Mbit" in out, out
    lab.clear_rate_limit(d)
    host = subprocess.run(["tc", "qdisc", "show", "dev", d.veth], capture_output=True, text=True).stdout
    assert "tbf" not in host


def test_host_key_regeneration(lab, tmp_path):
    d = lab.devices[0]
    kh = tmp_path / "known_hosts"
    kh.write_text(lab.known_hosts_text())
    argv = ["ssh", "-i", str(lab.key_path), "-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes",
            "-o", "StrictHostKeyChecking=yes", "-o", "UserKnownHostsFile=%s" % kh, "-o", "ConnectTimeout=5",
            "ethoscope@%s" % d.ip, "true"]
    assert subprocess.run(argv, capture_output=True, timeout=30).returncode == 0
    old = d.host_key_pub.read_text()
    lab.regenerate_host_key(d)
    assert d.host_key_pub.read_text() != old
    r = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    assert r.returncode != 0 and "IDENTIFICATION HAS CHANGED" in r.stderr


def test_stop_and_start_device(lab):
    d = lab.devices[1]
    lab.stop_device(d)
    assert subprocess.run(["ip", "netns", "pids", d.netns], capture_output=True, text=True).stdout.split() == []
    assert ssh(lab, d, "true", connect_timeout=2, timeout=20).returncode != 0
    lab.start_device(d)
    assert ssh(lab, d, "true").returncode == 0


# ---------------------------------------------------------------------- live writer
def test_live_writer_grows_and_stays_intact(lab):
    d = lab.devices[0]
    w = lab.start_writer(d, interval=0.005, rows_per_commit=10)
    assert w.pid != os.getpid() and _pid_alive(w.pid)
    assert w.db_path.is_relative_to(d.data_root)
    wait_for(lambda: w.committed_rows() >= 200, what="writer commits")
    # a concurrent reader sees committed rows while the writer runs
    con = sqlite3.connect(str(w.db_path), timeout=30)
    mid = sum(con.execute("SELECT count(*) FROM ROI_%d" % i).fetchone()[0] for i in range(1, 21))
    con.close()
    assert mid >= 200 + 200
    n = w.stop()
    assert not _pid_alive(w.pid)
    assert n >= 200 and n == w.committed_rows()
    con = sqlite3.connect(str(w.db_path))
    assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    total = sum(con.execute("SELECT count(*) FROM ROI_%d" % i).fetchone()[0] for i in range(1, 21))
    assert total == 200 + n  # populated rows + everything the writer committed
    con.close()


# ---------------------------------------------------------------------- config, coexistence
def test_config_text(lab, tmp_path):
    text = lab.config_text(tmp_path / "r", tmp_path / "v", tmp_path / "s.json", tmp_path / "st", tmp_path / "kh")
    assert "server = %s" % lab.node_address in text
    assert "key = %s" % lab.key_path in text and "user = ethoscope" in text
    try:
        from configobj import ConfigObj
    except ImportError:
        return
    c = ConfigObj(text.splitlines())
    assert c["paths"]["results"] == str(tmp_path / "r") and c["ssh"]["known_hosts"] == str(tmp_path / "kh")


def test_two_labs_coexist(make_lab):
    a = make_lab(n_devices=1)
    b = make_lab(n_devices=1)
    assert a.subnet != b.subnet and a.devices[0].veth != b.devices[0].veth
    assert a.devices[0].id != b.devices[0].id
    for lab in (a, b):
        r = ssh(lab, lab.devices[0], "echo hi")
        assert r.returncode == 0 and r.stdout == "hi\n", r.stderr
        assert lab.devices[0].id in json.loads(get("http://%s/devices" % lab.node_address)[2])
    a.down()
    assert ssh(b, b.devices[0], "true").returncode == 0  # b unaffected by a's teardown


# ---------------------------------------------------------------------- teardown after SIGKILL
def _lab_processes(manifest):
    pids = list(manifest["pids"]["node"]) + list(manifest["pids"]["writers"])
    for ns in manifest["netns"]:
        out = subprocess.run(["ip", "netns", "pids", ns], capture_output=True, text=True).stdout
        pids += [int(x) for x in out.split()]
    return pids


def test_teardown_after_sigkill(tmp_path):
    name = "sk%d" % os.getpid()
    script = ("import sys, time\nfrom tests.lab import Lab\nlab = Lab(name=%r, n_devices=2)\nlab.up()\n"
              "lab.populate(lab.devices[0], db_rows=50, video_chunks=1, chunk_bytes=1024)\n"
              "lab.start_writer(lab.devices[0])\nprint('UP', flush=True)\ntime.sleep(600)\n" % name)
    proc = subprocess.Popen([PY, "-c", script], cwd=str(REPO_ROOT), stdout=subprocess.PIPE, text=True,
                            env=dict(os.environ, PYTHONPATH=str(REPO_ROOT)))
    try:
        assert proc.stdout.readline().strip() == "UP"
        m = json.loads((MANIFESTS / ("%s.json" % name)).read_text())
        pids = _lab_processes(m)
        assert len(pids) >= 4 and all(_pid_alive(p) for p in pids)
        # an ssh session is open on a device when the owner dies
        lab_view = Lab(name=name)
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        assert all(_pid_alive(p) for p in pids)  # the lab outlived its owner
        lab_view.down()
        assert not any(_pid_alive(p) for p in pids)
        assert not set(m["netns"]) & set(_netns_list())
        assert not os.path.exists("/sys/class/net/%s" % m["bridge"])
        assert not any(os.path.exists("/sys/class/net/%s" % v) for v in m["veths"])
        with open("/proc/self/mountinfo") as f:
            mounts = f.read()
        assert not any(ns in mounts for ns in m["netns"])
        assert m["base_dir"] not in mounts
        if not _netns_list():
            assert " /run/netns " not in mounts
        assert not Path(m["base_dir"]).exists()
        assert not (MANIFESTS / ("%s.json" % name)).exists()
        lab_view.down()  # idempotent
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        Lab(name=name).down()


# ---------------------------------------------------------------------- mDNS
BROWSE = r'''
import json, sys, time
from zeroconf import Zeroconf, ServiceBrowser
zc = Zeroconf(interfaces=[sys.argv[1]])
found = {}
class L:
    def add_service(self, zc, t, name):
        info = zc.get_service_info(t, name, 3000)
        if info:
            found[name] = {"ip": info.parsed_addresses(),
                           "props": {k.decode(): (v or b"").decode() for k, v in info.properties.items()}}
    def update_service(self, *a): pass
    def remove_service(self, *a): pass
b = ServiceBrowser(zc, "_ethoscope._tcp.local.", L())
deadline = time.monotonic() + 15
while len(found) < int(sys.argv[2]) and time.monotonic() < deadline:
    time.sleep(0.05)
zc.close()
print(json.dumps(found))
'''


def test_mdns_announces_devices(lab):
    pid = lab.announce_mdns()
    assert _pid_alive(pid)
    r = subprocess.run([PY, "-c", BROWSE, lab.subnet + ".1", str(len(lab.devices))], capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    found = json.loads(r.stdout)
    by_id = {v["props"].get("MACHINE_ID"): v["ip"] for v in found.values()}
    assert by_id == {d.id: [d.ip] for d in lab.devices}
    lab.down()
    assert not _pid_alive(pid)


# ---------------------------------------------------------------------- CLI, stale labs
def test_cli_up_status_down():
    name = "cli%d" % os.getpid()
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT))

    def run(*a):
        return subprocess.run([PY, "-m", "tests.lab"] + list(a), cwd=str(REPO_ROOT), env=env,
                              capture_output=True, text=True, timeout=120)
    try:
        r = run("up", "--name", name, "--devices", "2", "--populate", "--chunk-mb", "0.05")
        assert r.returncode == 0, r.stderr
        info = json.loads(r.stdout)
        assert info["node_address"].startswith("169.254.") and len(info["devices"]) == 2
        data_root = Path(info["devices"][0]["data_root"])
        assert list((data_root / "results").glob("*/*/*/*.db"))
        st = json.loads(run("status").stdout)
        mine = [line for line in st if line["name"] == name]
        assert mine and mine[0]["netns_alive"] == 2 and mine[0]["bridge_alive"]
        devs = json.loads(get("http://%s/devices" % info["node_address"])[2])
        assert info["devices"][1]["id"] in devs
        assert run("down", "--name", name).returncode == 0
        assert not any(line["name"] == name for line in json.loads(run("status").stdout))
        assert not any(ns == info["devices"][0]["netns"] for ns in _netns_list())
    finally:
        Lab(name=name).down()


def test_up_replaces_stale_lab_of_same_name():
    name = "re%d" % os.getpid()
    first = Lab(name=name, n_devices=1)
    try:
        first.up()
        old_ns = first.devices[0].netns
        old_pids = subprocess.run(["ip", "netns", "pids", old_ns], capture_output=True, text=True).stdout.split()
        assert old_pids
        second = Lab(name=name, n_devices=2)
        second.up()
        assert not any(_pid_alive(int(p)) for p in old_pids)
        assert all(ssh(second, d, "true").returncode == 0 for d in second.devices)
        second.down()
        assert not [n for n in _netns_list() if n.startswith(old_ns.rsplit("-", 1)[0] + "-")]
    finally:
        Lab(name=name).down()
