"""Links the node's archive holds (issue 21, item 5): the upstream tool's root ``rsync -a`` kept the
devices' symbolic links, an operator may have made some. Real command line, real rsync/sshd/SQLite on
the lab.

A link in device A's folder toward device B's, under a name device A also uses, and a device A that
hides that folder from its tree copy (so that rsync does not replace the link with a folder): A's
database there would be recovered through the link, over B's. It is not: A fails naming the link,
B's copy stays byte-identical, ``check`` names the link. A device folder that is itself a link to
another disk keeps working.
"""
import os
import shutil

from tests.integration.safety_checks import PYTHON, ROOT, Backup, clean_env, roi_rows, sha256
from tests.lab.data import _make_db

# The device's rsync hides one folder from its first run (in a results-only pass, the tree copy;
# the raw copy of the databases comes after it), as a device may: its rsync is its own.
HIDING_RSYNC = r'''#!/bin/sh
if [ ! -e %(marker)s ]; then
  : > %(marker)s
  mv %(folder)s %(aside)s
  /usr/bin/rsync "$@"; code=$?
  mv %(aside)s %(folder)s
  exit $code
fi
exec /usr/bin/rsync "$@"
'''


def test_a_link_toward_another_device_is_never_written_through(make_lab, tmp_path):
    lab = make_lab(n_devices=2, populate=True)
    a, b = lab.devices
    backup = Backup(lab, tmp_path / "node")
    assert backup.run().returncode == 0
    victim = min((backup.results / b.id).rglob("*.db"))
    before = (sha256(victim), victim.stat().st_mtime_ns)
    # On device A: a database named as B's, in a folder "evil" of its own; on the node, A's "evil"
    # is a link to B's experiment folder (as a migrated archive may hold).
    evil = a.data_root / "results" / a.id / a.name / "evil"
    evil.mkdir()
    _make_db(evil / victim.name, a, victim.parent.name, 5000)
    shutil.chown(evil, "ethoscope", "ethoscope")
    shutil.chown(evil / victim.name, "ethoscope", "ethoscope")
    link = backup.results / a.id / a.name / "evil"
    os.symlink(os.path.relpath(victim.parent, link.parent), link)
    on_device = f"/ethoscope_data/results/{a.id}/{a.name}/evil"      # the device sees its tree there
    lab.override_programs(a, {"rsync": HIDING_RSYNC % {
        "marker": "/ethoscope_data/hid-once", "folder": on_device, "aside": "/ethoscope_data/evil-aside"}})

    result = backup.run("--results-only")

    assert (a.data_root / "hid-once").exists(), "the device did not hide its folder: no attack happened"
    assert result.returncode == 1, result.stderr
    assert (sha256(victim), victim.stat().st_mtime_ns) == before and roi_rows(victim) < 5000
    status = backup.status()["devices"]
    assert status[b.id]["progress"]["status"] == "completed"
    message = status[a.id]["progress"]["message"] + status[a.id]["last_error"]
    assert f"{link}/{victim.name} leads to {victim}, outside {backup.results / a.id}" in message, message
    assert link.is_symlink()                                   # the node's own links are not ours to change
    check = _check(backup)
    assert f"FAIL  1 symbolic link(s) under {backup.results} lead out of their device's folder: " \
           f"{a.id}/{a.name}/evil -> " in check.stdout, check.stdout


def test_a_device_folder_linked_to_another_disk_keeps_working(lab, tmp_path):
    a, b = lab.devices
    backup = Backup(lab, tmp_path / "node")
    assert backup.run().returncode == 0
    disk = tmp_path / "disk2"
    disk.mkdir()
    shutil.move(backup.results / a.id, disk / a.id)
    os.symlink(disk / a.id, backup.results / a.id)
    made = lab.populate(a, experiments=1, db_rows=50, video_chunks=1, chunk_bytes=4096, mp4=False)

    result = backup.run()

    assert result.returncode == 0, result.stderr
    new_db = next(p for p in made if p.endswith(".db"))
    assert roi_rows(disk / new_db.removeprefix("results/")) == 50
    check = _check(backup)
    assert f"ok    1 symbolic link(s) under {backup.results}, each staying in its device's folder: " \
           f"{a.id} -> {disk / a.id}" in check.stdout, check.stdout


def _check(backup):
    import subprocess
    return subprocess.run([PYTHON, "-m", "ethoscope_rsync", "check", "-c", str(backup.conf)], cwd=ROOT,
                          capture_output=True, text=True, timeout=120, env=clean_env())
