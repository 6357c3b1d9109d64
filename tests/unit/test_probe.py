"""The probe run by this machine's own shells on a folder made to look like a device's: what it
prints parses into the device's machine id, CPU, top folders and databases, bounded."""
import os
import subprocess
from pathlib import Path

import pytest

from ethoscope_rsync.probe import MAX_TOP_ENTRIES, has_aes, parse_probe, probe_script

MID = "0123456789abcdef0123456789abcdef"


@pytest.fixture
def device(tmp_path):
    results, videos = tmp_path / "results", tmp_path / "videos"
    db = results / MID / "ETHOSCOPE_004" / "2025-03-08_10-00-00" / f"2025-03-08_10-00-00_{MID}.db"
    db.parent.mkdir(parents=True)
    db.write_bytes(b"x" * 100)
    (db.parent / (db.name + "-wal")).write_bytes(b"w" * 7)
    for name in ("f" * 32, "with space", ".hidden", "..dots", "-dash"):
        (results / name).mkdir()
    os.symlink("/nowhere", results / "dangling")
    videos.mkdir()
    for n in range(MAX_TOP_ENTRIES + 5):
        (videos / f"v{n:03d}").mkdir()
    return results, videos, db


def machine_id() -> str:
    try:
        return Path("/etc/machine-id").read_text()[:64].strip()
    except OSError:
        return ""


@pytest.mark.parametrize("shell", ["sh", "bash"])
def test_what_a_shell_answers(device, shell):
    results, videos, db = device
    output = subprocess.run([shell, "-c", probe_script(str(results), str(videos) + "/")], capture_output=True,
                            text=True, timeout=30, check=True).stdout
    found = parse_probe(output)
    assert found.complete and found.machine_id == (machine_id() if len(machine_id()) == 32 else "")
    assert found.aes == has_aes(Path("/proc/cpuinfo").read_text())
    assert sorted(found.top["results"]) == sorted(["..dots", "-dash", ".hidden", MID, "dangling", "f" * 32,
                                                   "with space"])
    assert len(found.top["videos"]) == MAX_TOP_ENTRIES
    relative = str(db.relative_to(results))
    assert {path: stat.size for path, stat in found.files.items()} == {relative: 100, relative + "-wal": 7}


def test_a_device_without_its_trees(tmp_path):
    found = parse_probe(subprocess.run(["sh", "-c", probe_script(str(tmp_path / "no"), str(tmp_path / "none"))],
                                       capture_output=True, text=True, timeout=30, check=True).stdout)
    assert found.complete and found.top == {"results": (), "videos": ()} and found.files == {}
