"""Every write of a pass resolves inside its device's own area (ethoscope_rsync.backup.confine), on real
folders and links in a temporary directory; and a device job on scripted processes refuses to write
through a link planted in its folder toward another device's."""
import os
from pathlib import Path

from ethoscope_rsync.backup import confine
from ethoscope_rsync.backup.databases import DatabaseWork, confine_work
from ethoscope_rsync.backup.destinations import remove_orphan_partials
from ethoscope_rsync.backup.rsync import PARTIAL_DIR
from ethoscope_rsync.state import events as ev
from tests.unit.backup.job_fakes import DB, DEVICE, LIVE, MID, FakeProcesses, Step, make_db, probe_answer, raw_copy, \
    run_job

OTHER = "f" * 32


def tree(root: Path) -> Path:
    (root / "results" / MID / "x").mkdir(parents=True)
    (root / "results" / OTHER / "x").mkdir(parents=True)
    (root / "videos").mkdir()
    return root / "results"


def test_a_path_through_a_link_to_another_device_escapes(tmp_path):
    results = tree(tmp_path)
    os.symlink(f"../{OTHER}/x", results / MID / "y")
    problem = confine.escape(results / MID, results / MID / "y" / "a.db")
    assert problem.startswith(f"{results / MID}/y/a.db leads to {results / OTHER}/x/a.db, outside {results / MID}")
    assert confine.escape(results / MID, results / MID / "x" / "a.db") == ""
    assert confine.escape(results / MID, results / MID / "new" / "deeper" / "a.db") == ""   # not there yet
    os.symlink("x", results / MID / "inside")           # a link that stays in the folder is harmless
    assert confine.escape(results / MID, results / MID / "inside" / "a.db") == ""
    os.symlink(f"../../{OTHER}/x/a.db", results / MID / "x" / "b.db")   # the file itself
    assert confine.escape(results / MID, results / MID / "x" / "b.db")


def test_a_device_folder_may_lead_to_another_disk_but_not_into_or_above_a_destination(tmp_path):
    results = tree(tmp_path)
    dests = (results, tmp_path / "videos")
    (tmp_path / "disk2" / "A").mkdir(parents=True)
    os.rename(results / MID, tmp_path / "moved")
    os.symlink(tmp_path / "disk2" / "A", results / MID)
    assert confine.device_folder_problem(results / MID, dests) == ""
    assert confine.escape(results / MID, results / MID / "x" / "a.db") == ""   # its writes land on disk2
    for target in (results / OTHER, tmp_path / "videos" / "z", tmp_path):
        os.unlink(results / MID)
        os.symlink(target, results / MID)
        assert "inside or above the destination" in confine.device_folder_problem(results / MID, dests), target
    assert confine.device_folder_problem(results / OTHER, dests) == ""       # a real folder
    assert confine.device_folder_problem(results / "missing", dests) == ""


def test_a_link_on_the_way_to_a_private_area_is_refused(tmp_path):
    results = tree(tmp_path)
    (tmp_path / "elsewhere").mkdir()
    assert confine.linked(results, results / ".ethoscope-backup" / "raw" / MID / MID) == ""
    os.symlink(tmp_path / "elsewhere", results / ".ethoscope-backup")
    assert "leads to" in confine.linked(results, results / ".ethoscope-backup" / "raw" / MID / MID)


def test_the_job_refuses_a_raw_mirror_reached_through_a_link(config, tmp_path):
    config.paths.results.mkdir(parents=True)
    (tmp_path / "elsewhere").mkdir()
    os.symlink(tmp_path / "elsewhere", config.paths.results / ".ethoscope-backup")
    fake = FakeProcesses({}, probe=[Step((probe_answer(LIVE),))])
    result, _, _ = run_job(config, fake)
    assert not result.ok
    assert result.message.startswith(f"{config.paths.results}/.ethoscope-backup/raw/{MID}/{MID} leads")
    assert fake.calls == ["probe", "ssh -O exit"]     # refused before any transfer, and not retried
    assert not any((tmp_path / "elsewhere").iterdir())


def test_the_job_refuses_a_device_folder_linked_to_another_device_s(config):
    config.paths.results.mkdir(parents=True)
    (config.paths.results / OTHER).mkdir()
    os.symlink(OTHER, config.paths.results / MID)
    fake = FakeProcesses({}, probe=[Step((probe_answer(LIVE),))])
    result, _, _ = run_job(config, fake)
    assert not result.ok and "is a symbolic link to" in result.message and "inside or above" in result.message
    assert fake.calls == ["probe", "ssh -O exit"]


def test_a_database_behind_a_link_to_another_device_is_not_recovered_and_fails_the_device(config):
    """The node holds <A>/ETHOSCOPE_004/<date> as a link to B's folder (an archive migrated from the
    upstream tool); the device hid that folder from the tree copy and lists a database in it."""
    results = config.paths.results
    date = DB.rsplit("/", 1)[0]
    (results / OTHER / "ETHOSCOPE_009" / "2025").mkdir(parents=True)
    victim = results / OTHER / "ETHOSCOPE_009" / "2025" / os.path.basename(DB)
    make_db(victim, 7)
    before = victim.read_bytes()
    (results / date).parent.mkdir(parents=True)
    os.symlink(f"../../{OTHER}/ETHOSCOPE_009/2025", results / date)
    fake = FakeProcesses({"results:raw": [Step(effect=raw_copy(config, 3))]}, probe=[Step((probe_answer(LIVE),))])
    result, sent, _ = run_job(config.changed(transfer={"what": "results"}), fake)
    assert not result.ok and result.message.startswith(f"{results / DB} leads to {victim}, outside {results / MID}")
    assert victim.read_bytes() == before
    assert "results:raw" not in fake.calls and "holder" not in fake.calls   # nothing to take safely
    assert not [e for e in sent if isinstance(e, ev.DatabaseChecked)]
    (listed,) = [dict(e.files) for e in sent if isinstance(e, ev.Listed)]
    assert DB not in listed                                    # B's file is not counted as A's either
    assert [e.ok for e in sent if isinstance(e, ev.Finished)] == [False]


def test_confine_work_keeps_the_databases_that_stay_inside(tmp_path):
    results = tree(tmp_path)
    raw = results / ".ethoscope-backup" / "raw" / MID
    os.symlink(f"../{OTHER}/x", results / MID / "y")
    work = DatabaseWork(copy=("x/a.db", "y/b.db"), recover=(f"{MID}/x/a.db", f"{MID}/y/b.db"), live=True,
                        finished=(f"{MID}/x/c.db",))
    kept, problems = confine_work(work, results, raw, MID)
    assert (kept.copy, kept.recover, kept.finished) == (("x/a.db",), (f"{MID}/x/a.db",), (f"{MID}/x/c.db",))
    assert len(problems) == 1 and problems[0].startswith(f"{results}/{MID}/y/b.db leads to")


def test_partials_reached_through_a_link_are_left_alone(tmp_path):
    results = tree(tmp_path)
    (results / OTHER / "x" / PARTIAL_DIR).mkdir()
    (results / OTHER / "x" / PARTIAL_DIR / "b.h264").write_text("B's interrupted chunk")
    os.symlink(f"../{OTHER}/x", results / MID / "y")
    (results / MID / "x" / PARTIAL_DIR).mkdir()
    (results / MID / "x" / PARTIAL_DIR / "gone.h264").write_text("")
    removed = remove_orphan_partials(results, {f"{MID}/y/a.h264": 1, f"{MID}/x/a.h264": 1})
    assert removed == [f"{MID}/x/gone.h264"]
    assert (results / OTHER / "x" / PARTIAL_DIR / "b.h264").exists()


def test_links_under_a_destination_are_listed_and_those_leaving_their_folder_flagged(tmp_path):
    results = tree(tmp_path)
    os.symlink(f"../{OTHER}/x", results / MID / "y")
    os.symlink("x", results / MID / "inside")
    os.symlink(OTHER, results / ("e" * 32))
    (tmp_path / "disk2").mkdir()
    os.symlink(tmp_path / "disk2", results / ("d" * 32))
    found = confine.find_links(results, 30.0)
    assert found.complete and found.count == 4 and found.leaving == 2
    assert {(link.path, link.target, link.leaves) for link in found.found} == {
        (f"{MID}/y", f"../{OTHER}/x", True), (f"{MID}/inside", "x", False),
        ("e" * 32, OTHER, True), ("d" * 32, str(tmp_path / "disk2"), False)}


def test_listing_links_is_bounded_in_time(tmp_path):
    results = tree(tmp_path)
    ticks = iter(range(100))
    found = confine.find_links(results, 1.5, clock=lambda: next(ticks))
    assert not found.complete


def test_the_areas_of_a_device_without_links_are_its_own(config):
    assert confine.areas_problem(config.changed(transfer={"safe": True}), DEVICE, MID, "S") == ""
