"""The probe run by this machine's own shells on a folder made to look like a device's: what it
prints parses into the device's machine id, CPU, top folders and databases, bounded."""
import os
import subprocess
from pathlib import Path

import pytest

from ethoscope_rsync.backup import probe as probe_module
from ethoscope_rsync.backup.probe import MAX_TOP_ENTRIES, FileStat, has_aes, parse_probe, probe_script

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


def answer(listing: str) -> str:
    """A probe's answer whose database section is `listing` (what find | head printed)."""
    mark = "@ethoscope-backup-probe "
    return (f"{mark}machine-id\n{MID}\n{mark}cpu\n{mark}results\n{MID}\n{mark}videos\n{mark}databases\n"
            f"{listing}\n{mark}end\n")


def test_a_listing_cut_inside_its_last_record_loses_that_record_and_is_incomplete():
    """The byte cap can cut the last record: x.db-wal cut to x.db must not replace x.db's stat."""
    db = f"{MID}/E/ts/x.db"
    found = parse_probe(answer(f"100 1.5 ./{db}\0" f"7 2.5 ./{db}"))      # was "./x.db-wal\0"
    assert found.files == {db: FileStat(100, "1.5")} and not found.complete
    whole = parse_probe(answer(f"100 1.5 ./{db}\0" f"7 2.5 ./{db}-wal\0"))
    assert whole.files == {db: FileStat(100, "1.5"), db + "-wal": FileStat(7, "2.5")} and whole.complete


@pytest.mark.parametrize("shell", ["sh", "bash"])
def test_a_listing_past_its_byte_cap_is_incomplete(tmp_path, monkeypatch, shell):
    """find's listing is cut by head on the device: what came whole is kept, the answer says it
    is not all (the device's job is not told a database is absent when it was not listed)."""
    folder = tmp_path / "results" / MID / "ETHOSCOPE_004"
    folder.mkdir(parents=True)
    for n in range(40):
        (folder / f"{n:02d}_{'x' * 60}.db").write_bytes(b"d")

    def probe(limit):
        monkeypatch.setattr(probe_module, "LISTING_LIMIT", limit)
        return parse_probe(subprocess.run([shell, "-c", probe_script(str(tmp_path / "results"), str(tmp_path))],
                                          capture_output=True, text=True, timeout=30, check=True).stdout)
    everything = probe(1 << 20)
    assert everything.complete and len(everything.files) == 40
    listing = sum(len(f"1 {stat.mtime} ./{path}\0") for path, stat in everything.files.items())
    cut = probe(1000)
    assert not cut.complete and 0 < len(cut.files) < 40
    assert all(everything.files[path] == stat for path, stat in cut.files.items())
    assert not probe(listing - 1).complete       # one byte more than kept: there may be more
    assert probe(listing).complete and probe(listing).files == everything.files


def test_more_database_files_than_the_cap_is_incomplete(monkeypatch):
    monkeypatch.setattr(probe_module, "MAX_DATABASE_FILES", 3)
    listing = "".join(f"1 1.5 ./{MID}/E/ts/{n}.db\0" for n in range(4))
    found = parse_probe(answer(listing))
    assert len(found.files) == 3 and not found.complete
    exactly = parse_probe(answer("".join(f"1 1.5 ./{MID}/E/ts/{n}.db\0" for n in range(3))))
    assert len(exactly.files) == 3 and exactly.complete


def test_an_answer_cut_at_its_limit_is_incomplete_and_not_tried_again():
    """The pass ends a probe whose answer reaches MAX_OUTPUT (execute.run's cut_at): a device that
    never ends its line gets the same verdict the next time, so it is not retried."""
    found = probe_module.parse_probe(probe_module.MARK + "machine-id\n" + "x" * probe_module.MAX_OUTPUT)
    assert not found.complete and found.shortfall != probe_module.CUT_SHORT
