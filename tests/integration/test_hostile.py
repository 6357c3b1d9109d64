"""Hostile or broken input (issue 6, promise 7): bad config, lying node server, hostile device entries,
odd remote file names, symlinks out of a device's tree. Real command line, real rsync/sshd on the lab."""
import os
import subprocess
import time
from pathlib import Path

import pytest

from tests.integration.safety_checks import PYTHON, ROOT, Backup, clean_env, sha256, visible_files

BAD_CONFIGS = {
    "unknown key": "[transfer]\nio_timeot = 10\n",
    "bad type": "[transfer]\nio_timeout = soon\n",
    "unparsable line": "[transfer\nio_timeout = 10\n",
    "unknown section": "[tranfser]\nio_timeout = 10\n",
}


def error_lines(text):
    return [line for line in text.splitlines() if line.strip()]


@pytest.mark.parametrize("case", sorted(BAD_CONFIGS))
def test_malformed_config_is_one_line_exit_2(tmp_path, case):
    conf = tmp_path / "backup.conf"
    conf.write_text("[node]\nserver = 169.254.0.1:9\n[paths]\nresults = %s\nstatus_file = %s\nstate_dir = %s\n%s"
                    % (tmp_path / "results", tmp_path / "status.json", tmp_path / "state", BAD_CONFIGS[case]))
    result = subprocess.run([PYTHON, "-m", "ethoscope_rsync", "run", "-c", str(conf)], cwd=ROOT,
                            capture_output=True, text=True, timeout=30, env=clean_env())
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    lines = error_lines(result.stderr)
    assert len(lines) == 1, result.stderr
    assert str(conf) in lines[0]
    assert not (tmp_path / "results").exists() and not (tmp_path / "status.json").exists()


def test_broken_node_server_fails_fast_with_one_clear_line(make_lab, tmp_path):
    lab = make_lab(n_devices=1)
    backup = Backup(lab, tmp_path, node={"discovery_timeout": 3, "mdns_timeout": 0.5})
    modes = ("garbage", "html", "http500", "truncated", "down",
             # not HTTP at all (server = node:22), too many or too long headers, a cut chunked body,
             # JSON nested past the interpreter's limit, a redirect elsewhere, one byte a second
             "banner", "headers", "longheader", "chunked-truncated", "nested", "redirect", "drip")
    for mode in modes:
        lab.node.set_mode(mode)
        started = time.monotonic()
        result = backup.run(timeout=60)
        elapsed = time.monotonic() - started
        assert result.returncode == 1, (mode, result.stderr)
        assert "Traceback" not in result.stderr, mode
        errors = [line for line in error_lines(result.stderr) if line.startswith("E ")]
        assert len(errors) == 1, (mode, result.stderr)
        assert "node server" in errors[0], (mode, errors)
        assert elapsed < 20, "%s: took %.1fs" % (mode, elapsed)
        status = backup.status()
        assert status["run"]["outcome"] == "discovery failed" and status["status"] == "idle", mode
        assert (backup.state / "history.json").exists(), mode
        assert not backup.results.exists() or not visible_files(backup.results), mode


def test_empty_node_answer_is_nothing_to_do(make_lab, tmp_path):
    lab = make_lab(n_devices=1)
    lab.node.set_mode("empty")
    backup = Backup(lab, tmp_path)
    result = backup.run(timeout=60)
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    assert backup.status()["devices"] == {}


def test_slow_node_server_is_given_up_within_the_bound(make_lab, tmp_path):
    lab = make_lab(n_devices=1)
    lab.node.set_mode("slow:30")
    backup = Backup(lab, tmp_path, node={"discovery_timeout": 2, "mdns_timeout": 0.5})
    started = time.monotonic()
    result = backup.run(timeout=60)
    elapsed = time.monotonic() - started
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert elapsed < 15, "slow node server held the pass %.1fs (discovery_timeout=2)" % elapsed


def listing(*roots):
    """Every path under the given roots (names only), to see what a pass created."""
    seen = set()
    for root in roots:
        for dirpath, dirnames, filenames in os.walk(root):
            for name in dirnames + filenames:
                seen.add(os.path.join(dirpath, name))
    return seen


def test_hostile_device_entries_are_skipped_and_others_backed_up(lab, tmp_path):
    a, b = lab.devices
    hostile = [
        {"id": "a" * 32, "name": "../../x", "ip": a.ip, "status": "running"},
        {"id": "b" * 32, "name": "ETHOSCOPE_001; rm -rf /", "ip": a.ip, "status": "running"},
        {"id": "c" * 32, "name": "$(reboot)", "ip": a.ip, "status": "running"},
        {"id": "not-hex-" + "z" * 24, "name": "ETHOSCOPE_050", "ip": a.ip, "status": "running"},
        {"id": "d" * 32, "name": "ETHOSCOPE_051", "ip": "not-an-ip", "status": "running"},
        {"id": "e" * 32, "name": "ETHOSCOPE_052", "ip": "-oProxyCommand=x", "status": "running"},
        {"id": "f" * 32, "name": "ETHOSCOPE_053", "ip": "%s; reboot" % a.ip, "status": "running"},
        "not even an object",
    ]
    lab.node.set_extra_entries(hostile)
    work = tmp_path / "work"
    work.mkdir()
    backup = Backup(lab, work)
    watched = ["/var/tmp", str(tmp_path)]
    before = listing(*watched)
    result = backup.run()
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    warnings = [line for line in error_lines(result.stderr) if line.startswith("W ")]
    assert len(warnings) >= len(hostile), result.stderr
    status = backup.status()
    assert set(status["devices"]) == {a.id, b.id}
    for device in lab.devices:
        assert status["devices"][device.id]["progress"]["status"] == "completed"
        assert status["devices"][device.id]["name"] == device.name
        for path in (device.data_root / "videos").rglob("*"):
            if path.is_file():
                assert sha256(backup.videos / path.relative_to(device.data_root / "videos")) == sha256(path)
    created = listing(*watched) - before
    # in this test's own folder, nothing outside the destination; in /var/tmp (shared with whatever
    # else runs on the machine), nothing named after a hostile entry
    outside = [p for p in created if p.startswith(str(tmp_path) + "/") and not p.startswith(str(work) + "/")]
    assert not outside, "written outside the destination: %s" % sorted(outside)[:10]
    for path in created:
        for bad in ("..", ";", "$(", "reboot", "ProxyCommand", "ETHOSCOPE_05"):
            assert bad not in path.replace(str(work), "", 1), "hostile name reached a path: %s" % path
    assert not Path("/x").exists()


def test_odd_file_names_are_copied_and_status_stays_valid_json(lab, tmp_path):
    device = lab.devices[0]
    folder = next((device.data_root / "videos").glob("*/*/*"))
    odd = os.fsencode(folder) + b"/odd\nname \x01\x7f\xff\xfe \xc3\xa9 'q\" $(x) \\#012.h264"
    with open(odd, "wb") as f:
        f.write(os.urandom(30000))
    os.chown(odd, *(lambda s: (s.st_uid, s.st_gid))(folder.stat()))
    backup = Backup(lab, tmp_path)
    result = backup.run()
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    copy = os.fsencode(backup.videos / folder.relative_to(device.data_root / "videos")) + odd[len(os.fsencode(folder)):]
    assert os.path.exists(copy), sorted(os.listdir(os.path.dirname(copy)))
    with open(copy, "rb") as c, open(odd, "rb") as o:
        assert c.read() == o.read()
    backup.status_file.read_bytes().decode("utf-8")                     # strict UTF-8
    status = backup.status()
    assert status["devices"][device.id]["progress"]["status"] == "completed"
    second = backup.run()
    assert second.returncode == 0 and backup.status()["run"]["files_received"] == 0, second.stderr


def test_symlinks_out_of_the_device_tree_are_not_followed(lab, tmp_path):
    device = lab.devices[0]
    experiment = next((device.data_root / "results").glob("*/*/*"))
    (experiment / "evil").symlink_to("/etc")
    (experiment / "passwd.db").symlink_to("/etc/passwd")
    (device.data_root / "videos" / device.id / "evil_dir").symlink_to("/etc")
    backup = Backup(lab, tmp_path)
    result = backup.run()
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    node_experiment = backup.results / experiment.relative_to(device.data_root / "results")
    for path in (node_experiment / "evil", node_experiment / "passwd.db", backup.videos / device.id / "evil_dir"):
        assert not os.path.lexists(path), "symlink or its target copied: %s" % path
    for root in (backup.results, backup.videos):
        for dirpath, dirnames, filenames in os.walk(root):
            for name in dirnames + filenames:
                path = os.path.join(dirpath, name)
                assert not os.path.islink(path), path
                assert name not in ("passwd", "shadow", "hostname", "os-release"), path
    assert backup.device(device)["progress"]["status"] == "completed"


def test_a_device_with_names_past_the_inventory_s_bounds_is_named_and_cannot_grow_the_history(lab, tmp_path):
    """Files whose paths are longer than the inventory keeps are still copied and counted, never
    listed one by one: the device is named in a warning, the history stays small."""
    from ethoscope_rsync.state.inventory import PATH_MAX, Inventories
    device = lab.devices[0]
    folder = next((device.data_root / "videos").glob("*/*/*"))
    deep = folder / "/".join(["d" * 200] * 3)          # a path past PATH_MAX below the device's folder
    deep.mkdir(parents=True)
    for n in range(300):
        (deep / f"{n:04d}_{'x' * 100}.h264").write_bytes(b"v")
    for path in [deep, *deep.parents]:
        if path == device.data_root:
            break
        os.chown(path, *(lambda s: (s.st_uid, s.st_gid))(folder.stat()))
    for child in deep.iterdir():
        os.chown(child, *(lambda s: (s.st_uid, s.st_gid))(folder.stat()))
    backup = Backup(lab, tmp_path)
    result = backup.run()
    assert result.returncode == 0, result.stderr
    named = [line for line in result.stderr.splitlines()
             if line.startswith("W ") and device.name in line and "300 of its videos files not kept one by one" in line]
    assert len(named) == 1, result.stderr
    assert len(list((backup.videos / folder.relative_to(device.data_root / "videos")).rglob("*.h264"))) >= 300
    videos = backup.status()["devices"][device.id]["synced"]["videos"]
    stored = Inventories(backup.state / "inventory.sqlite", readonly=True).files(device.id, "videos")
    assert videos["local_files"] == len(stored) + 300 and all(len(p) <= PATH_MAX for p in stored)
    assert "x" * 100 not in (backup.state / "history.json").read_text()
