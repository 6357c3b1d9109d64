"""verify on the simulated lab: copies made by a real pass, a damaged chunk and a damaged database
named with exit 1, the record kept per device and shown in /status after the next pass, -e and
--since, its own lock (a running pass does not hold it up; a second verify is refused)."""
import fcntl
import hashlib
import json
import os
import subprocess
import time

from tests.integration.backup_node import PYTHON, ROOT, Node


def verify(node, *args):
    return subprocess.run([PYTHON, "-m", "ethoscope_rsync", "verify", "-c", str(node.conf), *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)


def add_chunk_sidecars(device):
    """Devices that write an .md5 next to every chunk (the lab writes them for mp4s only)."""
    for chunk in (device.data_root / "videos").rglob("*.h264"):
        (chunk.parent / (chunk.name + ".md5")).write_text(hashlib.md5(chunk.read_bytes()).hexdigest() + "\n")


def damage(path, offset, data):
    """Change bytes in place, keeping the size and the time (as a failing disk would)."""
    st = path.stat()
    with open(path, "r+b") as handle:
        handle.seek(offset)
        handle.write(data)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))


def test_verify_names_damaged_copies_and_records_them(make_lab, tmp_path):
    lab = make_lab(n_devices=2, populate=True)
    for device in lab.devices:
        add_chunk_sidecars(device)
    node = Node(lab, tmp_path)
    assert node.run().returncode == 0

    clean = verify(node)
    assert clean.returncode == 0, clean.stdout + clean.stderr
    records = json.loads((node.state / "verify.json").read_text())["devices"]
    one, two = lab.devices
    assert set(records) == {one.id, two.id}
    assert records[one.id]["files"] == 4 and records[one.id]["damaged_count"] == 0   # db, 2 chunks, mp4

    chunk = sorted((node.videos / one.id).rglob("*.h264"))[0]
    damage(chunk, 1000, b"\x00" * 16 if chunk.read_bytes()[1000:1016] != b"\x00" * 16 else b"\x01" * 16)
    database = sorted((node.results / two.id).rglob("*.db"))[0]
    damage(database, 3 * 4096, os.urandom(3 * 4096))

    damaged = verify(node)
    assert damaged.returncode == 1, damaged.stdout + damaged.stderr
    lines = sorted(line for line in damaged.stdout.splitlines() if line.startswith("DAMAGED"))
    assert len(lines) == 2, damaged.stdout
    assert lines[0].startswith("DAMAGED %s videos/%s: checksum mismatch" % (one.name, chunk.relative_to(node.videos)))
    assert lines[1].startswith("DAMAGED %s results/%s: " % (two.name, database.relative_to(node.results)))
    assert "DAMAGED" in damaged.stderr                     # and in the log (the journal under systemd)
    records = json.loads((node.state / "verify.json").read_text())["devices"]
    assert records[one.id]["damaged_count"] == 1 and records[two.id]["damaged_count"] == 1
    assert records[one.id]["damaged"][0][0] == "videos/%s" % chunk.relative_to(node.videos)

    only_one = verify(node, "-e", one.name[-3:])
    assert only_one.returncode == 1 and two.name not in only_one.stdout and one.name in only_one.stdout
    assert set(json.loads((node.state / "verify.json").read_text())["devices"]) == {one.id, two.id}
    for old in (chunk, database):                          # damaged long ago: not in the last day
        os.utime(old, (time.time() - 2 * 86400,) * 2)
    recent = verify(node, "--since", "1")
    assert recent.returncode == 0, recent.stdout
    kept = json.loads((node.state / "verify.json").read_text())["devices"][one.id]
    assert kept["files"] == 3 and kept["damaged_count"] == 1          # what it did not re-check stays damaged

    assert node.run().returncode == 0                      # the pass copies the records into the history
    status = node.status()
    assert status["devices"][one.id]["verification"]["damaged_count"] == 1
    assert status["devices"][two.id]["verification"]["damaged"][0][0].startswith("results/%s/" % two.id)


def test_verify_has_its_own_lock(make_lab, tmp_path):
    lab = make_lab(n_devices=1, populate=True)
    node = Node(lab, tmp_path)
    assert node.run().returncode == 0
    with open(node.state / "lock", "a") as pass_lock:      # a pass is running: verify goes on
        fcntl.flock(pass_lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        assert verify(node).returncode == 0
    with open(node.state / "verify.lock", "a") as other:   # another verify is running: refused
        fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)
        busy = verify(node)
    assert busy.returncode == 75 and "another verify is already running" in busy.stderr
    assert verify(node, "-e", "bogus!").returncode == 2
