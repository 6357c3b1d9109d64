"""A device's job as pure code: processes are scripted fakes, so retries, backoff, messages, stage
order and database selection are tested without sshd, root or a network."""
import json

import pytest

from ethoscope_rsync.state import events as ev
from ethoscope_rsync.backup.databases import pick_databases, signature
from ethoscope_rsync.config.devices import Device
from ethoscope_rsync.backup.livedb import READY_PREFIX
from ethoscope_rsync.state.history import DatabaseRecord, History
from ethoscope_rsync.state.model import ERROR
from ethoscope_rsync.state.store import StatusStore
from ethoscope_rsync.backup.probe import MARK, MAX_OUTPUT, parse_probe
from tests.unit.backup.job_fakes import CHUNK, DB, LIVE, MID, FakeProcesses, RecordingStop, Step, file_line, lane, \
    make_db, probe_answer, raw_copy, run_job, without_videos


def test_stage_order_and_what_is_reported(config):
    fake = FakeProcesses({
        "results:skip": [Step((file_line(".f", 10, f"{MID}/ETHOSCOPE_004/notes.txt"),))],
        "results:raw": [Step((file_line(">f+++++++++", 8192, DB),), effect=raw_copy(config, 3))],
        "videos": [Step(("   1,000  50%   1.00MB/s    0:00:01", file_line(">f+++++++++", 1000, CHUNK)))]},
        probe=[Step((probe_answer(LIVE),))])
    result, sent, _ = run_job(config, fake)
    assert result.ok and result.message == "Backup completed successfully"
    assert without_videos(fake.calls) == ["probe", "results:skip", "holder", "holder ready", "results:raw",
                                          "holder released", "ssh -O exit"]
    assert [type(e).__name__ for e in sent[:2] + sent[-1:]] == ["Started", "Contacted", "Finished"]
    assert lane(sent, "results") == ["TransferEnded", "DatabaseChecked", "FileReceived", "Listed"]
    assert lane(sent, "videos") == ["Progressed", "FileReceived", "TransferEnded", "Listed"]
    listed = {e.kind: dict(e.files) for e in sent if isinstance(e, ev.Listed)}
    node_size = (config.paths.results / DB).stat().st_size
    assert listed == {"results": {f"{MID}/ETHOSCOPE_004/notes.txt": 10, DB: node_size},
                      "videos": {CHUNK: 1000}}
    checked = next(e for e in sent if isinstance(e, ev.DatabaseChecked))
    assert (checked.path, checked.verdict, checked.rows, checked.ok) == (DB, "ok", 3, True)
    assert checked.signature == (8192, "1700000000.5", 4120, "1700000001.5")


def test_only_the_device_s_own_folder_is_copied_and_the_rest_is_named(config):
    fake = FakeProcesses({}, probe=[Step((probe_answer(results=(MID, "f" * 32, "lost+found"), videos=()),))])
    result, sent, _ = run_job(config, fake)
    assert result.ok and "videos" not in fake.calls          # no folder of its own there: nothing to copy
    (warning,) = [e for e in sent if isinstance(e, ev.Warned)]
    assert warning.message == (f"not copied: results/{'f' * 32}, lost+found on the device (only its own "
                               f"folder results/{MID}/ is backed up)")


def test_names_from_rsync_outside_the_folder_are_ignored(config):
    fake = FakeProcesses({"videos": [Step((file_line(">f+++++++++", 5, "../other/x.h264"),
                                           file_line(">f+++++++++", 5, "/etc/passwd"),
                                           file_line(">f+++++++++", 5, f"{MID}/ok.h264")))]})
    result, sent, _ = run_job(config.changed(transfer={"what": "videos"}), fake)
    assert result.ok
    assert [e.path for e in sent if isinstance(e, ev.FileReceived)] == [f"{MID}/ok.h264"]
    assert [e.message for e in sent if isinstance(e, ev.Warned)] == [
        f"ignored 2 name(s) outside the device's folder in rsync's output for videos/{MID}/: "
        "../other/x.h264, /etc/passwd"]


def test_a_device_past_the_inventory_s_bounds_is_named_in_a_warning(config):
    """Names longer than the inventory keeps are counted, not listed one by one, and the device is
    named: in the status (a warning event) and in the journal."""
    long_name = f"{MID}/ETHOSCOPE_004/{'d' * 600}.h264"
    fake = FakeProcesses({"videos": [Step((file_line(">f+++++++++", 7, long_name),
                                           file_line(">f+++++++++", 5, CHUNK)))]})
    result, sent, _ = run_job(config.changed(transfer={"what": "videos"}), fake)
    assert result.ok
    (listed,) = [e for e in sent if isinstance(e, ev.Listed)]
    assert dict(listed.files) == {CHUNK: 5} and listed.untracked == (1, 7)
    (warning,) = [e.message for e in sent if isinstance(e, ev.Warned)]
    assert warning.startswith("1 of its videos files not kept one by one in the node's inventory")


def test_names_from_the_holder_outside_the_folder_touch_nothing(config, tmp_path):
    outside = tmp_path / "outside.db"
    outside.write_bytes(b"x")
    before = outside.stat().st_mtime_ns
    forged = ["../../x.db", str(outside), "a/../../b.db"]
    fake = FakeProcesses({"results:raw": [Step(effect=raw_copy(config, 3))]}, probe=[Step((probe_answer(LIVE),))],
                         ready=READY_PREFIX + '{"held": %s, "failed": {}, "idle": []}' % json.dumps(forged))
    result, sent, _ = run_job(config.changed(transfer={"what": "results"}), fake)
    assert result.ok and outside.stat().st_mtime_ns == before
    (warning,) = [e.message for e in sent if isinstance(e, ev.Warned)]
    assert warning.startswith("ignored 3 name(s) outside the device's folder in the holder's answer for "
                              f"results/{MID}/")


def test_a_device_from_the_config_is_keyed_by_the_machine_id_it_tells(config):
    static = Device(name="ETHOSCOPE_004", address="169.254.9.4", source="config")
    result, sent, _ = run_job(config.changed(transfer={"what": "videos"}), FakeProcesses({}), device=static)
    assert result.ok and result.device.id == MID
    assert sent[0] == ev.Started("ETHOSCOPE_004", 1, sent[0].at)
    assert sent[1] == ev.Contacted("ETHOSCOPE_004", MID, True)
    assert {e.key for e in sent[2:]} == {MID}


def test_a_device_from_the_config_answering_with_another_device_s_identity_is_refused(config):
    """A [devices] typo (or an impostor) puts ETHOSCOPE_005 at the address of ETHOSCOPE_004, whose
    machine id is pinned: nothing is copied into 004's folder and 004's pin is not renamed."""
    typo = Device(name="ETHOSCOPE_005", address="169.254.9.4", source="config")
    fake = FakeProcesses({})
    result, sent, stop = run_job(config, fake, device=typo, owners={MID: "ETHOSCOPE_004"})
    assert not result.ok and fake.calls == ["probe", "ssh -O exit"] and stop.waits == []
    assert result.message == (f"the device at 169.254.9.4 says its machine id is {MID}, which is ETHOSCOPE_004's: "
                              "not backed up (correct the [devices] entry; if ETHOSCOPE_004's SD card was "
                              "replaced, run: ethoscope-backup forget-host ETHOSCOPE_004)")
    assert not any(isinstance(e, ev.Contacted) for e in sent)
    result, _, _ = run_job(config, FakeProcesses({}), device=typo, owners={MID: "ETHOSCOPE_005"})
    assert result.ok


def test_a_device_from_the_config_failing_after_first_contact_ends_failed_in_the_status(config, tmp_path):
    """Its later attempts and its end still carry the key it started with: the store follows the
    rename, so the device is never left "running" and its failure reaches the history."""
    static = Device(name="ETHOSCOPE_004", address="169.254.9.4", source="config")
    lost = Step(code=12, stderr="rsync: connection unexpectedly closed (0 bytes received so far) [Receiver]\n")
    result, sent, _ = run_job(config, FakeProcesses({"results:skip": [lost]}), device=static)
    assert not result.ok and [e.key for e in sent if isinstance(e, ev.Finished)] == ["ETHOSCOPE_004"]
    store = StatusStore(tmp_path / "status.json", History(), pid=1, what="unified", interval=60)
    store.add_device("", "ETHOSCOPE_004", "169.254.9.4")
    for event in sent:
        store.apply(event)
    (key, device), = store.status.devices.items()
    assert key == MID and device.state == ERROR and device.attempts == 3 and "connection unexpectedly" in device.error
    assert store.status.run.devices_done == 1 and store.status.run.devices_failed == 1
    assert store.history.devices[MID].last_outcome == ERROR
    assert "connection unexpectedly" in store.history.devices[MID].last_error


def test_unchanged_verified_databases_are_neither_held_nor_copied(config):
    make_db(config.paths.results / DB, 3)
    raw = config.paths.results / ".ethoscope-backup" / "raw" / MID / DB
    make_db(raw, 3)
    on_device = parse_probe(probe_answer(LIVE)).databases(MID)
    known = {DB: DatabaseRecord(signature(on_device[DB]), True, 3, "recovered 3 rows", 1.0)}
    fake = FakeProcesses({}, probe=[Step((probe_answer(LIVE),))])
    result, sent, _ = run_job(config, fake, known=known)
    assert result.ok and without_videos(fake.calls) == ["probe", "results:skip", "ssh -O exit"]
    assert not raw.exists()                                   # finished: the node's copy is the backup
    assert not any(isinstance(e, ev.DatabaseChecked) for e in sent)


def test_a_failed_recovery_is_tried_again_until_it_works(config):
    """The raw copy arrived in an earlier pass whose recovery failed: this pass recovers it,
    although the device's files did not change since."""
    raw_copy(config, 5)()
    on_device = parse_probe(probe_answer(LIVE)).databases(MID)
    known = {DB: DatabaseRecord(signature(on_device[DB]), False, 0, "No space left on device", 1.0)}
    fake = FakeProcesses({}, probe=[Step((probe_answer(LIVE),))])
    result, sent, _ = run_job(config, fake, known=known)
    assert result.ok and "results:raw" in fake.calls
    (checked,) = [e for e in sent if isinstance(e, ev.DatabaseChecked)]
    assert checked.ok and checked.rows == 5


def test_a_failed_recovery_of_a_database_the_device_deleted_uses_the_raw_copy(config):
    raw_copy(config, 5)()
    known = {DB: DatabaseRecord([8192, "1", -1, ""], False, 0, "refused: 5 rows < 6 in existing copy", 1.0)}
    fake = FakeProcesses({}, probe=[Step((probe_answer(()),))])
    result, sent, _ = run_job(config, fake, known=known)
    assert result.ok and "results:raw" not in fake.calls
    (checked,) = [e for e in sent if isinstance(e, ev.DatabaseChecked)]
    assert (checked.path, checked.ok, checked.signature) == (DB, True, (8192, "1", -1, ""))


def test_transient_failures_are_retried_with_backoff(config):
    lost = Step(code=12, stderr="rsync: connection unexpectedly closed\nrsync error: (code 12)\n")
    fake = FakeProcesses({"videos": [lost, lost, Step()]})
    result, sent, stop = run_job(config.changed(transfer={"what": "videos"}), fake)
    assert result.ok
    assert stop.waits == [5.0, 10.0]
    assert [e.attempt for e in sent if isinstance(e, ev.Started)] == [1, 2, 3]
    assert fake.calls.count("videos") == 3


def test_retries_are_bounded_and_the_message_carries_rsync_s_own_line(config):
    lost = Step(code=12, stderr="rsync: connection unexpectedly closed (0 bytes received so far)\n")
    fake = FakeProcesses({"videos": [lost]})
    result, sent, stop = run_job(config.changed(transfer={"what": "videos"}), fake)
    assert not result.ok and fake.calls.count("videos") == 3 and stop.waits == [5.0, 10.0]
    assert result.message == ("error in rsync protocol data stream (connection lost): "
                              "rsync: connection unexpectedly closed (0 bytes received so far)")
    assert sent[-1] == ev.Finished(MID, False, result.message, sent[-1].at)


@pytest.mark.parametrize("code,stderr,expected", [
    (255, "@@@ WARNING: REMOTE HOST IDENTIFICATION HAS CHANGED! @@@\n", "forget-host ETHOSCOPE_004"),
    (11, "rsync: write failed on \"x\": No space left on device (28)\n", "destination full"),
])
def test_permanent_failures_are_not_retried(config, code, stderr, expected):
    fake = FakeProcesses({"videos": [Step(code=code, stderr=stderr)]})
    result, _, stop = run_job(config.changed(transfer={"what": "videos"}), fake)
    assert not result.ok and expected in result.message
    assert fake.calls.count("videos") == 1 and stop.waits == []


def test_a_stop_request_ends_the_job_without_retry(config):
    stop = RecordingStop()
    lost = Step(code=12, effect=stop.set)
    fake = FakeProcesses({"videos": [lost]})
    result, _, _ = run_job(config.changed(transfer={"what": "videos"}), fake, stop)
    assert not result.ok and fake.calls.count("videos") == 1 and stop.waits == []


def test_a_stop_request_during_the_databases_keeps_the_node_s_copies_and_says_so(config):
    stop = RecordingStop()
    copy = raw_copy(config, rows=5)
    fake = FakeProcesses({"results:raw": [Step((file_line(">f+++++++++", 8192, DB),),
                                               effect=lambda: (copy(), stop.set()))]},
                         probe=[Step((probe_answer(LIVE[:1]),))])
    result, sent, _ = run_job(config.changed(transfer={"what": "results"}), fake, stop)
    assert not result.ok and result.message == "interrupted by a stop request" and stop.waits == []
    assert not (config.paths.results / DB).exists()
    assert not any(isinstance(e, ev.DatabaseChecked) and e.ok for e in sent)


def test_a_probe_answer_cut_by_the_link_is_tried_again_one_past_the_limits_is_not(config):
    whole = probe_answer(LIVE[:1])
    by_the_link = Step((whole[:whole.index(MARK + "end")],))
    fake = FakeProcesses({}, probe=[by_the_link])
    result, _, stop = run_job(config, fake)
    assert not result.ok and stop.waits == [5.0, 10.0] and fake.calls.count("probe") == 3
    assert result.message == "the device's answer to the probe was cut short: the answer ended before its end mark"
    in_a_record = Step((whole.replace(f"./{DB}\0", f"./{DB}"),))
    fake = FakeProcesses({}, probe=[in_a_record])
    result, _, stop = run_job(config, fake)
    assert not result.ok and stop.waits == [] and fake.calls == ["probe", "ssh -O exit"]
    assert result.message.endswith("cut short: the database listing was cut inside a record")


def test_a_probe_answer_that_never_ends_is_cut_and_not_tried_again(config):
    flood = Step((probe_answer()[:40] + "x" * (MAX_OUTPUT + 100),), code=-15, cut=True)
    fake = FakeProcesses({}, probe=[flood])
    result, _, stop = run_job(config, fake)
    assert not result.ok and stop.waits == [] and fake.calls == ["probe", "ssh -O exit"]
    assert result.message.endswith(f"cut short: longer than {MAX_OUTPUT} characters")


def test_no_room_means_no_transfer(config):
    result, _, _ = run_job(config.changed(transfer={"min_free": 1 << 62}), fake := FakeProcesses({}))
    assert not result.ok and "not enough free space" in result.message
    assert fake.calls == ["ssh -O exit"]


def test_unreadable_files_do_not_stop_the_rest(config):
    """rsync 23 in the results: the databases and videos are still copied, then the device fails
    naming what could not be read."""
    unreadable = ('rsync: [sender] send_files failed to open "/ethoscope_data/results/x/secret": '
                  'Permission denied (13)\n')
    fake = FakeProcesses({"results:skip": [Step(code=23, stderr=unreadable + "rsync error: some files (code 23)\n")],
                          "videos": [Step((file_line(">f+++++++++", 1000, CHUNK),))]})
    result, sent, stop = run_job(config, fake)
    assert without_videos(fake.calls) == ["probe", "results:skip", "ssh -O exit"] and stop.waits == []
    assert fake.calls.count("videos") == 1
    assert not result.ok and result.message == (
        "1 problem(s), everything else was copied: results: " + unreadable.strip())
    assert [e.path for e in sent if isinstance(e, ev.FileReceived)] == [CHUNK]


def test_an_unverified_database_fails_the_attempt_and_is_retried(config):
    raw_db = config.paths.results / ".ethoscope-backup" / "raw" / MID / DB

    def torn():
        raw_db.parent.mkdir(parents=True, exist_ok=True)
        raw_db.write_bytes(b"SQLite format 3\x00" + b"\xff" * 4000)

    fake = FakeProcesses({"results:raw": [Step((file_line(">f+++++++++", 4016, DB),), effect=torn)]},
                         probe=[Step((probe_answer(LIVE[:1]),))])
    result, sent, stop = run_job(config.changed(transfer={"what": "results"}), fake)
    assert not result.ok and "database copy(ies) not verified, previous copy kept" in result.message
    assert fake.calls.count("results:raw") == 3 and stop.waits == [5.0, 10.0]
    assert "holder" not in fake.calls                        # no -wal/-shm: not open on the device
    assert not (config.paths.results / DB).exists()
    checked = [e for e in sent if isinstance(e, ev.DatabaseChecked)]
    assert {(e.verdict, e.ok) for e in checked} == {("kept previous copy", False)}


def test_a_database_the_device_cannot_read_is_not_verified_and_an_older_raw_copy_is_not_taken(config):
    """An I/O error on the SD card while the raw copy reads a database: the device fails naming it,
    and the raw mirror's copy from an earlier pass is never recovered as the device's current one."""
    old_raw = raw_copy(config, rows=5)
    old_raw()                                     # what an earlier pass left in the raw mirror
    error = f'rsync: [sender] read errors mapping "/ethoscope_data/results/{DB}": Input/output error (5)\n'
    fake = FakeProcesses({"results:raw": [Step(code=23, stderr=error + "rsync error: some files (code 23)\n")]},
                         probe=[Step((probe_answer(LIVE[:1]),))])
    result, sent, _ = run_job(config.changed(transfer={"what": "results"}), fake)
    assert not result.ok and result.message.endswith(f"{DB}: not copied from the device: Input/output error (5)")
    checked = [e for e in sent if isinstance(e, ev.DatabaseChecked)]
    assert checked and {(e.path, e.ok, e.signature) for e in checked} == {(DB, False, ())}
    assert not (config.paths.results / DB).exists()


def test_a_database_past_the_limits_fails_the_device_without_retry(config):
    """A crafted database is "not verified" at once; trying again in this pass cannot help."""
    from tests.lab.crafted import craft

    class Owner:
        id, name = MID, "ETHOSCOPE_004"
    raw_db = config.paths.results / ".ethoscope-backup" / "raw" / MID / DB

    def crafted():
        raw_db.parent.mkdir(parents=True, exist_ok=True)
        craft(raw_db, Owner, "2025-03-08_10-00-00", "memory", "check", rows=2)

    fake = FakeProcesses({"results:raw": [Step(effect=crafted)]}, probe=[Step((probe_answer(LIVE[:1]),))])
    result, sent, stop = run_job(config.changed(transfer={"what": "results"}), fake)
    assert not result.ok and result.message.startswith("1 database copy(ies) not verified, previous copy kept: ")
    assert "not verified: builds values larger than allowed" in result.message
    assert fake.calls.count("results:raw") == 1 and stop.waits == []
    (checked,) = [e for e in sent if isinstance(e, ev.DatabaseChecked)]
    assert (checked.verdict, checked.ok) == ("not verified", False)
    assert not (config.paths.results / DB).exists()


def test_which_databases_are_taken(tmp_path):
    raw, node = tmp_path / "raw", tmp_path / "node"
    answer = probe_answer((("m/a/new.db", 1, "1"), ("m/a/same.db", 2, "2"), ("m/a/grew.db", 3, "3"),
                           ("m/a/grew.db-wal", 9, "4"), ("m/a/grew.db-shm", 9, "4"), ("m/a/lost.db", 4, "4")))
    on_device = parse_probe(answer).databases("m")
    for name in ("same", "grew"):
        (node / "m" / "a").mkdir(parents=True, exist_ok=True)
        (node / "m" / "a" / f"{name}.db").write_bytes(b"x")
    (raw / "m" / "b").mkdir(parents=True)
    (raw / "m" / "b" / "failed.db").write_bytes(b"x")
    known = {"m/a/same.db": DatabaseRecord([2, "2", -1, ""], True, 1, "", 1.0),
             "m/a/grew.db": DatabaseRecord([3, "3", -1, ""], True, 1, "", 1.0),
             "m/b/failed.db": DatabaseRecord([1, "1", -1, ""], False, 0, "torn", 1.0),
             "m/b/gone.db": DatabaseRecord([1, "1", -1, ""], False, 0, "torn", 1.0)}
    work = pick_databases(on_device, known, node, raw)
    assert work.copy == ("a/grew.db", "a/lost.db", "a/new.db")
    assert work.recover == ("m/a/grew.db", "m/a/lost.db", "m/a/new.db", "m/b/failed.db")
    assert work.live and work.finished == ("m/a/same.db",)


def test_safe_keeps_the_old_copy_where_hard_links_are_refused(tmp_path, monkeypatch):
    """Debian's protected_hardlinks refuses a link to another user's file: --safe copies it instead
    (a fault the lab, running as root, cannot reach)."""
    from ethoscope_rsync.backup import databases

    def refused(source, target):
        raise PermissionError(1, "Operation not permitted")

    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "a.db").write_bytes(b"old rows")
    monkeypatch.setattr(databases.os, "link", refused)
    kept = databases.keep_aside(tmp_path, "2026-01-02_03-04-05", "m/a.db")
    assert kept == tmp_path / ".ethoscope-backup" / "replaced" / "2026-01-02_03-04-05" / "m" / "a.db"
    assert kept.read_bytes() == b"old rows"
