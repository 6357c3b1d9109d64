"""A node upgraded from a version that kept every device's files in history.json: its first pass
moves them to the inventory database, keeps every total, and counts what devices deleted since
from what the old version had listed. The old version is the real one (``git archive`` of
``BEFORE``), run on the lab before this one."""
import json
import subprocess

import pytest

from tests.integration.safety_checks import PYTHON, ROOT, Backup, clean_env

BEFORE = "eb4fbeb"      # the last commit whose pass kept each device's whole tree in history.json


@pytest.fixture
def old_code(tmp_path):
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", BEFORE, "ethoscope_rsync"], capture_output=True,
                             check=True, timeout=60).stdout
    code = tmp_path / "old-code"
    code.mkdir()
    subprocess.run(["tar", "-x", "-C", str(code)], input=archive, check=True, timeout=60)
    return code


def test_the_first_pass_moves_an_old_history_s_trees_to_the_inventory(lab, tmp_path, old_code):
    from ethoscope_rsync.state.inventory import Inventories
    backup = Backup(lab, tmp_path / "node")
    old = subprocess.run([PYTHON, "-m", "ethoscope_rsync", "run", "-c", str(backup.conf)], cwd=tmp_path,
                         capture_output=True, text=True, timeout=120, env=dict(clean_env(), PYTHONPATH=str(old_code)))
    assert old.returncode == 0, old.stderr
    history = json.loads((backup.state / "history.json").read_text())
    device = lab.devices[0]
    listed = history["devices"][device.id]["inventory"]["videos"]["present"]
    assert listed and "present_files" not in history["devices"][device.id]["inventory"]["videos"]
    before = backup.status()["devices"][device.id]["synced"]
    gone = sorted(listed)[0]                      # deleted on the device since the old pass
    (device.data_root / "videos" / gone).unlink()

    new = backup.run()
    assert new.returncode == 0, new.stderr
    stored = Inventories(backup.state / "inventory.sqlite", readonly=True)
    assert stored.files(device.id, "videos") == {p: s for p, s in listed.items() if p != gone}
    assert stored.retired(device.id, "videos") == (1, listed[gone])
    after = backup.status()["devices"][device.id]["synced"]
    for kind in ("results", "videos"):            # nothing is deleted on the node: the totals stay
        assert after[kind]["local_files"] == before[kind]["local_files"]
        assert after[kind]["disk_usage_bytes"] == before[kind]["disk_usage_bytes"]
    summary = json.loads((backup.state / "history.json").read_text())["devices"][device.id]["inventory"]["videos"]
    assert summary["present_files"] == len(listed) - 1 and summary["retired_files"] == 1
