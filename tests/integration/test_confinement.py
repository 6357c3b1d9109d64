"""Every device confined to its own archive (issue 12): attacks on the lab, for real.

A hostile device writes into another device's folder, forges the holder's answer and rsync's
per-file lines, tells another machine id, crafts databases that are expensive to check; an
impostor with its own sshd, host key and machine id claims a known device's name or id through the
node server or mDNS. Each test runs the real command
line against real sshd/rsync/SQLite and checks that the honest devices' data on the node is
byte-identical (content and mtime) before and after the attack.
"""
import json
import os
import sqlite3
import time

import pytest

from tests.lab.cost import measured
from tests.integration.safety_checks import HIDDEN, Backup, clean_env, roi_rows, sha256
from tests.lab.crafted import craft
from tests.lab.data import _make_db

FAKE_ROWS = 5000          # far more than an honest device's 200: a fake floor for the victim's copies
FORGED = "forged-by-a-device"


# ---------------------------------------------------------------- helpers
def node_data(backup, device):
    """{path: (sha256, mtime_ns)} of every file the node holds in the device's folders."""
    found = {}
    for root in (backup.results / device.id, backup.videos / device.id):
        for path in sorted(root.rglob("*")) if root.exists() else ():
            if path.is_file() and HIDDEN not in str(path):
                found[str(path)] = (sha256(path), path.stat().st_mtime_ns)
    return found


def everything(root):
    """Every path under root, for what a pass created or changed: {path: mtime_ns}."""
    seen = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = os.path.join(dirpath, name)
            seen[path] = os.lstat(path).st_mtime_ns
    return seen


def victim_files(device):
    """The victim's own database and first video chunk, relative to its trees' roots."""
    database = min((device.data_root / "results").rglob("*.db"))
    chunk = min((device.data_root / "videos").rglob("*.h264"))
    return (database.relative_to(device.data_root / "results"), chunk.relative_to(device.data_root / "videos"))


def plant_in_victims_folder(lab, attacker, victim):
    """On the attacker: results/<victim id>/<victim name>/<date>/<victim's database name> holding
    FAKE_ROWS rows, and a video chunk of the victim's name with other bytes and a newer mtime."""
    database, chunk = victim_files(victim)
    fake_db = attacker.data_root / "results" / database
    fake_db.parent.mkdir(parents=True, exist_ok=True)
    _make_db(fake_db, victim, database.parent.name, FAKE_ROWS)
    fake_chunk = attacker.data_root / "videos" / chunk
    fake_chunk.parent.mkdir(parents=True, exist_ok=True)
    fake_chunk.write_bytes(os.urandom(70000))
    later = time.time() + 3600
    os.utime(fake_chunk, (later, later))
    for kind in ("results", "videos"):
        lab._chown_tree(attacker.data_root, attacker.data_root / kind / victim.id)
    return database, chunk


def logins(device):
    """How many times the device's sshd let someone in (our key)."""
    try:
        return device.sshd_log.read_text(errors="replace").count("Accepted publickey")
    except FileNotFoundError:
        return 0


def add_rows(path, rows):
    con = sqlite3.connect(str(path), isolation_level=None)
    try:
        con.execute("BEGIN")
        con.executemany("INSERT INTO ROI_1 (t, x, y, w, h, phi, is_inferred, has_interacted, xy_dist_log10x1000)"
                        " VALUES (?, 1, 1, 1, 1, 1, 0, 0, 1)", [(10 ** 9 + k,) for k in range(rows)])
        con.execute("COMMIT")
    finally:
        con.close()


def lines_with(text, *needles):
    return [line for line in text.splitlines() if all(n in line for n in needles)]


def first_pass(backup, *devices):
    result = backup.run()
    assert result.returncode == 0, result.stderr
    for device in devices:
        assert backup.device(device)["progress"]["status"] == "completed", result.stderr
    return result


@pytest.fixture
def impostor_lab(make_lab):
    """Two honest devices (A, B) and an impostor I: a lab device of its own (sshd, host key, machine
    id) that the node server lists as offline under its own name, and that holds a fake copy of B's
    data in B's folder. Returns (lab, A, B, I)."""
    lab = make_lab(n_devices=3, populate=True)
    a, b, impostor = lab.devices
    lab.node.set_device_status(impostor, "offline")
    plant_in_victims_folder(lab, impostor, b)
    return lab, a, b, impostor


# ---------------------------------------------------------------- a device writing into another's folder
def test_a_device_cannot_write_into_another_device_s_folder(lab, tmp_path):
    a, b = lab.devices
    backup = Backup(lab, tmp_path, transfer={"retries": 1})
    first_pass(backup, a, b)
    before = node_data(backup, b)
    database, chunk = plant_in_victims_folder(lab, a, b)

    attacked = backup.run()
    assert attacked.returncode == 0, attacked.stderr
    assert node_data(backup, b) == before, "the hostile device changed the victim's files on the node"
    assert not (backup.results / a.id / b.id).exists() and not (backup.videos / a.id / b.id).exists()
    warnings = backup.device(a)["warnings"]
    for kind in ("results", "videos"):
        named = [w for w in warnings if f"{kind}/{b.id}" in w]
        assert len(named) == 1, warnings
        assert len(lines_with(attacked.stderr, "W ", "not copied", f"{kind}/{b.id}")) == 1, attacked.stderr
    assert backup.device(b)["progress"]["status"] == "completed"

    # the victim's database goes on growing: its copies are taken, not held back by a fake floor
    add_rows(b.data_root / "results" / database, 30)
    after = backup.run()
    assert after.returncode == 0, after.stderr
    node_copy = backup.results / database
    assert roi_rows(node_copy) == roi_rows(b.data_root / "results" / database) == 200 + 30
    assert backup.device(b)["databases"][str(database)]["verdict"] == "ok"
    assert sha256(backup.videos / chunk) == sha256(b.data_root / "videos" / chunk)


# ---------------------------------------------------------------- forged names from the device
HOSTILE_HOLDER = """#!/bin/sh
# a hostile device's python3: whatever it is asked to run, it answers as the holder, with names
# meant to make the node touch files outside the device's folders
echo called >> /ethoscope_data/holder-called
printf '%%s\\n' 'ETHOSCOPE-BACKUP-HOLD %s'
cat > /dev/null
"""

# A hostile device's rsync: the real one, with rsync protocol messages (MSG_INFO, printed by the
# node's rsync as its own output lines) injected once multiplexing started.
HOSTILE_RSYNC = r"""#!/usr/bin/python3
import os, struct, subprocess, sys
LINES = %r
with open("/ethoscope_data/rsync-forged", "a") as marker:
    marker.write("forged\n")
proc = subprocess.Popen(["/usr/bin/rsync"] + sys.argv[1:], stdin=0, stdout=subprocess.PIPE)
out, sink = proc.stdout, sys.stdout.buffer

def forward(n):
    sink.flush()
    data = b""
    while len(data) < n:
        chunk = out.read1(n - len(data))
        if not chunk:
            raise EOFError
        data += chunk
    sink.write(data)
    return data

compress = any(a.startswith("-") and not a.startswith("--") and "z" in a for a in sys.argv[1:])
try:
    forward(4)                                             # protocol version
    first = forward(1)[0]                                  # compatibility flags (varint)
    forward(format(first, "08b").index("0") if first != 0xFF else 8)
    for _ in range(2 if compress else 1):                  # negotiated checksum (and compression)
        size = forward(1)[0]
        if size & 0x80:
            size = (size & 0x7F) * 256 + forward(1)[0]
        forward(size)
    forward(4)                                             # checksum seed
    head = forward(4)                                      # first multiplexed frame
    forward(struct.unpack("<I", head)[0] & 0xFFFFFF)
    for line in LINES:
        payload = (line + "\n").encode()
        sink.write(struct.pack("<I", ((7 + 2) << 24) | len(payload)) + payload)
except EOFError:
    pass
sink.flush()
while True:
    chunk = out.read1(65536)
    if not chunk:
        break
    sink.write(chunk)
    sink.flush()
sys.exit(proc.wait())
"""


def test_forged_holder_answer_and_rsync_lines_touch_nothing_outside_the_device_s_folder(lab, tmp_path):
    a, b = lab.devices
    backup = Backup(lab, tmp_path / "node")
    first_pass(backup, a, b)
    before = node_data(backup, b)
    outside = tmp_path / "outside" / f"{FORGED}.db"
    outside.parent.mkdir()
    _make_db(outside, b, "2024-03-01_09-00-00", 10)
    os.utime(outside, (1e9, 1e9))
    outside_digest = sha256(outside)
    victim_db, _ = victim_files(b)
    up = "../" * (len(backup.results.parts) + 6)
    names = [str(outside), up + str(outside).lstrip("/"), f"../{victim_db}", f"../../{victim_db}",
             f"../../../{b.id}/{victim_db}", f"./../{victim_db}", f"x/../../{victim_db}"]
    hold = {"held": names, "failed": {}, "idle": [], "pid": 1, "sqlite": "3"}
    lines = [f"ETHOSCOPE-BACKUP-FILE >f+++++++++ 4096 4096 {name}" for name in names]
    lines += [f"ETHOSCOPE-BACKUP-FILE >f+++++++++ 4096 4096 {FORGED}/../{n}" for n in names[:2]]
    lab.override_programs(a, {"python3": HOSTILE_HOLDER % json.dumps(hold),
                              "rsync": HOSTILE_RSYNC % (lines,)})
    own_db = min((a.data_root / "results").rglob("*.db"))
    reader = sqlite3.connect(str(own_db))          # the device's database is open: -wal and -shm,
    reader.execute("SELECT count(*) FROM sqlite_master").fetchone()   # so the holder is called
    watched = everything(tmp_path)
    try:
        attacked = backup.run()
    finally:
        reader.close()
    assert (a.data_root / "holder-called").exists() and (a.data_root / "rsync-forged").exists(), \
        "the hostile programs did not run: the attack did not happen"
    assert attacked.returncode == 0, attacked.stderr
    assert (sha256(outside), outside.stat().st_mtime) == (outside_digest, 1e9)
    assert node_data(backup, b) == before
    allowed = [str(backup.results / a.id), str(backup.videos / a.id), str(backup.results / HIDDEN),
               str(backup.videos / HIDDEN), str(backup.state), str(backup.status_file.parent)]
    changed = [path for path, mtime in everything(tmp_path).items()
               if watched.get(path) != mtime and not any(path == p or path.startswith(p + "/") for p in allowed)]
    assert not changed, "the node touched files outside the device's folders: %s" % changed
    status = backup.status()
    warnings = status["devices"][a.id]["warnings"]
    assert [w for w in warnings if "ignored" in w and "the holder's answer" in w], warnings
    assert [w for w in warnings if "ignored" in w and "rsync's output for results/" in w], warnings
    assert lines_with(attacked.stderr, "W ", "ignored", "outside the device's folder"), attacked.stderr
    status["devices"][a.id]["warnings"] = []
    assert FORGED not in json.dumps(status), "a forged name was used (it is only named in the warnings)"
    assert status["devices"][a.id]["progress"]["status"] == "completed"


# ---------------------------------------------------------------- a device telling another machine id
def test_a_device_telling_another_machine_id_is_refused(lab, tmp_path):
    a, b = lab.devices
    backup = Backup(lab, tmp_path)
    first_pass(backup, a, b)
    before_a, before_b = node_data(backup, a), node_data(backup, b)
    plant_in_victims_folder(lab, a, b)
    lab.set_machine_id(a, b.id)          # if its word were taken, B's folder would be its own

    attacked = backup.run()
    assert attacked.returncode == 1, attacked.stderr
    entry = backup.device(a)
    assert entry["progress"]["status"] == "error"
    assert f"says its machine id is {b.id}" in entry["last_error"] and a.id in entry["last_error"], entry["last_error"]
    assert backup.device(b)["progress"]["status"] == "completed"
    assert node_data(backup, b) == before_b and node_data(backup, a) == before_a


# ---------------------------------------------------------------- impostors claiming an identity
CLAIMS = {
    # the impostor's entry: (name, machine id, what its /etc/machine-id says), B not listed
    "a known name with a new machine id": ("B.name", "I.id", "I.id"),
    "a known name and its machine id, from another address": ("B.name", "B.id", "B.id"),
    "a known machine id under a new name": ("ETHOSCOPE_050", "B.id", "B.id"),
}


@pytest.mark.parametrize("claim", sorted(CLAIMS))
def test_an_impostor_claiming_a_known_identity_is_refused(impostor_lab, tmp_path, claim):
    lab, a, b, impostor = impostor_lab
    backup = Backup(lab, tmp_path)
    first_pass(backup, a, b)
    before = node_data(backup, b)
    values = {"B.name": b.name, "B.id": b.id, "I.id": impostor.id, "ETHOSCOPE_050": "ETHOSCOPE_050"}
    name, machine_id, told = (values[v] for v in CLAIMS[claim])
    lab.set_machine_id(impostor, told)
    lab.node.set_device_status(b, "offline")                     # the real B is away
    lab.node.set_extra_entries([{"id": machine_id, "name": name, "ip": impostor.ip, "status": "running"}])
    logins_before = logins(impostor)

    attacked = backup.run()
    assert attacked.returncode == 1, attacked.stderr
    assert f"ethoscope-backup forget-host {b.name}" in attacked.stderr, attacked.stderr
    assert logins(impostor) == logins_before, "the impostor was logged in to"
    assert impostor.host_key_pub.read_text().split()[1] not in backup.known_hosts.read_text()
    status = backup.status()
    assert impostor.id not in status["devices"] and "ETHOSCOPE_050" not in json.dumps(status["devices"])
    assert status["devices"][b.id]["name"] == b.name
    assert node_data(backup, b) == before
    assert status["devices"][a.id]["progress"]["status"] == "completed"

    lab.node.set_extra_entries([])                               # B is back: backed up as before
    lab.node.set_device_status(b, "running")
    again = backup.run()
    assert again.returncode == 0, again.stderr
    assert backup.device(b)["progress"]["status"] == "completed" and node_data(backup, b) == before


RIVALS = {"the same name": ("I.id", "B.name"), "the same machine id": ("B.id", "ETHOSCOPE_050"),
          "the same name and machine id": ("B.id", "B.name")}


@pytest.mark.parametrize("rival", sorted(RIVALS))
def test_a_pinned_device_is_backed_up_beside_an_impostor_claiming_its_identity(impostor_lab, tmp_path, rival):
    """Pins win: B's key and id are pinned, so an entry of the same pass claiming its name or id
    (from another address) is the impostor: held back and named, never contacted; B is backed up."""
    lab, a, b, impostor = impostor_lab
    backup = Backup(lab, tmp_path)
    first_pass(backup, a, b)
    values = {"B.name": b.name, "B.id": b.id, "I.id": impostor.id, "ETHOSCOPE_050": "ETHOSCOPE_050"}
    entry = dict(zip(("id", "name"), (values[v] for v in RIVALS[rival])))
    lab.set_machine_id(impostor, entry["id"])
    lab.node.set_extra_entries([dict(entry, ip=impostor.ip, status="running")])
    logins_before = logins(b), logins(impostor)

    attacked = backup.run()
    held = lines_with(attacked.stderr, "W ", "holding back", f"of {b.name}", f"backed up at {b.ip}",
                      f"impostor(s) {entry['name']} at {impostor.ip}")
    assert len(held) == 1, attacked.stderr
    assert attacked.returncode == 1, "a held-back entry must fail the pass\n" + attacked.stderr
    assert logins(impostor) == logins_before[1], "the impostor was contacted"
    assert logins(b) > logins_before[0], "B was not backed up"
    status = backup.status()
    assert status["devices"][b.id]["progress"]["status"] == "completed"
    assert status["devices"][b.id]["from_history"] is False and status["devices"][b.id]["ip"] == b.ip
    assert status["devices"][a.id]["progress"]["status"] == "completed"
    assert impostor.id not in status["devices"]


def test_mdns_never_overrides_the_node_server_and_names_must_match_exactly(impostor_lab, tmp_path):
    lab, a, b, impostor = impostor_lab
    backup = Backup(lab, tmp_path, node={"discovery_timeout": 3, "mdns_timeout": 2})
    first_pass(backup, a, b)
    before = node_data(backup, b)
    lab.set_machine_id(impostor, b.id)
    lab.announce_mdns(services=[{"name": a.name, "id": a.id, "ip": a.ip},
                                {"name": b.name, "id": b.id, "ip": impostor.ip},
                                {"name": "ETHOSCOPE_12345", "id": impostor.id, "ip": impostor.ip}])
    logins_before = logins(impostor)

    # the node server answers: what mDNS says is not used at all
    answered = backup.run()
    assert answered.returncode == 0, answered.stderr
    assert backup.device(b)["ip"] == b.ip and backup.device(b)["progress"]["status"] == "completed"
    assert "ETHOSCOPE_1234" not in answered.stderr and logins(impostor) == logins_before

    # the node server is down: mDNS is the fallback, and says nothing that is taken on its word
    lab.node.set_mode("down")
    fallback = backup.run()
    assert lines_with(fallback.stderr, "W ", "'ETHOSCOPE_12345' is not an ETHOSCOPE_NNN name"), fallback.stderr
    assert "ETHOSCOPE_1234 " not in fallback.stderr and "ETHOSCOPE_1234:" not in fallback.stderr
    assert f"ethoscope-backup forget-host {b.name}" in fallback.stderr, fallback.stderr
    assert fallback.returncode == 1, fallback.stderr
    assert logins(impostor) == logins_before, "the impostor was logged in to"
    status = backup.status()
    assert "ETHOSCOPE_1234" not in {d["name"] for d in status["devices"].values()}
    assert status["devices"][a.id]["progress"]["status"] == "completed"
    assert node_data(backup, b) == before


# ---------------------------------------------------------------- crafted databases
def measured_run(backup, *args):
    """A pass -> (result, CPU seconds of the pass and its children, peak RSS in MB of the largest)."""
    return measured(backup.argv(*args), env=clean_env(), timeout=300)


def test_a_crafted_database_is_not_verified_and_the_pass_ends_in_bounded_time_and_memory(lab, tmp_path):
    a, b = lab.devices
    backup = Backup(lab, tmp_path, transfer={"retries": 2, "database_check_timeout": 2})
    honest, honest_cpu, honest_rss = measured_run(backup)
    assert honest.returncode == 0, honest.stderr
    before_a, before_b = node_data(backup, a), node_data(backup, b)
    # A's database becomes an hour of CPU to check (100,000 rows, 2.6 MB); a new experiment of A's
    # holds a database costing 1.2 GB to check; B goes on recording
    own, _ = victim_files(a)
    own_db = a.data_root / "results" / own
    craft(own_db, a, own.parent.name, "cpu", "generated", rows=100_000)
    bomb = own_db.parents[1] / "2024-03-02_09-00-00" / f"2024-03-02_09-00-00_{a.id}.db"
    bomb.parent.mkdir()
    craft(bomb, a, bomb.parent.name, "memory", "check", rows=2)
    lab._chown_tree(a.data_root, own_db.parents[1])
    victim_db, _ = victim_files(b)
    add_rows(b.data_root / "results" / victim_db, 25)

    attacked, cpu, rss = measured_run(backup)
    print(f"\npass CPU and peak RSS: honest first pass {honest_cpu:.2f} s, {honest_rss:.0f} MB; "
          f"with the crafted databases {cpu:.2f} s, {rss:.0f} MB (database_check_timeout = 2 s)")
    assert attacked.returncode == 1, attacked.stderr
    entry = backup.device(a)
    assert entry["progress"]["status"] == "error" and entry["attempts"] == 1, entry["last_error"]
    assert "2 database copy(ies) not verified, previous copy kept" in entry["last_error"]
    verdicts = entry["databases"]
    assert verdicts[str(own)]["verdict"] == verdicts[str(bomb.relative_to(a.data_root / "results"))]["verdict"] \
        == "not verified"
    assert "took longer than the 2s allowed" in verdicts[str(own)]["message"]
    assert node_data(backup, a) == before_a, "the node's previous copy of A's database did not stay"
    assert backup.device(b)["progress"]["status"] == "completed"
    assert roi_rows(backup.results / victim_db) == 200 + 25 and node_data(backup, b) != before_b
    assert cpu < honest_cpu + 3 * 2 + 5, "the pass spent %.1f s of CPU" % cpu
    assert rss < max(2 * honest_rss, honest_rss + 64), "the pass peaked at %.0f MB" % rss


# ---------------------------------------------------------------- retired devices keep their pins
def test_a_retired_device_leaves_the_status_and_its_identity_stays_pinned(impostor_lab, tmp_path):
    lab, a, b, impostor = impostor_lab
    backup = Backup(lab, tmp_path, extra="[status]\nretire_after = 0.001\n")
    first_pass(backup, a, b)
    before = node_data(backup, b)
    lab.node.set_device_status(b, "offline")                     # B leaves the lab
    gone = backup.run()
    assert gone.returncode == 0, gone.stderr
    assert lines_with(gone.stderr, "I ", "no longer shown", b.name), gone.stderr
    assert b.id not in backup.status()["devices"]
    table = backup.run(command="status")
    assert table.returncode == 0 and b.name not in table.stdout and a.name in table.stdout, table.stdout

    # someone takes B's name (or its id) later: refused, as for a device still shown
    lab.node.set_extra_entries([{"id": impostor.id, "name": b.name, "ip": impostor.ip, "status": "running"},
                                {"id": b.id, "name": "ETHOSCOPE_050", "ip": impostor.ip, "status": "running"}])
    logins_before = logins(impostor)
    claimed = backup.run()
    assert claimed.returncode == 1, claimed.stderr
    assert len(lines_with(claimed.stderr, "refused", f"forget-host {b.name}")) == 2, claimed.stderr
    assert logins(impostor) == logins_before and node_data(backup, b) == before

    # B itself comes back: known by the same pin, backed up and shown again
    lab.node.set_extra_entries([])
    lab.node.set_device_status(b, "running")
    back = backup.run()
    assert back.returncode == 0, back.stderr
    assert backup.device(b)["progress"]["status"] == "completed" and node_data(backup, b) == before
