"""One run of the second copy with restic's answers scripted (restic itself runs in
tests/integration/test_offsite_lab.py): what is recorded, logged and returned for each outcome."""
import json
import signal
import threading
from pathlib import Path

import pytest

from ethoscope_rsync.config.load import load_config
from ethoscope_rsync.offsite import run as offsite_run
from ethoscope_rsync.state.store import load_offsite, pass_lock, save_history
from ethoscope_rsync.state.history import DatabaseRecord, DeviceHistory, History
from ethoscope_rsync.system.execute import Result

NOW = 1_800_000_000.0
ID = "a" * 32
SUMMARY = json.dumps({"message_type": "summary", "files_new": 3, "files_changed": 0, "files_unmodified": 0,
                      "data_added": 3000, "total_files_processed": 3, "total_bytes_processed": 2900,
                      "total_duration": 1.5, "snapshot_id": "1234abcd" * 8})


class Restic:
    """Scripted answers by restic command (the word after the global options)."""

    def __init__(self, **answers):
        self.answers, self.calls, self.seen_excludes = answers, [], []

    @staticmethod
    def command(argv):
        words = [w for w in argv[1:] if not w.startswith("-")]
        return next(w for w in words
                    if w in ("backup", "forget", "prune", "unlock", "stats", "init", "cat", "check", "snapshots"))

    def _answer(self, argv):
        self.calls.append(argv)
        code, stdout, stderr, *flags = self.answers.get(self.command(argv), (0, "", ""))
        return Result(tuple(argv), code, stdout, stderr, interrupted="interrupted" in flags)

    def run(self, argv, *, timeout, stop=None, env=None, stop_signal=None, stop_grace=None, input=b""):
        assert env["RESTIC_PASSWORD_FILE"] and stop_signal == signal.SIGINT and stop_grace == offsite_run.CLEAN_UP
        return self._answer(argv)

    def stream(self, argv, on_record, *, timeout, stop=None, env=None, stop_signal=None, stop_grace=None,
               keep_stdout=False, input=b""):
        if "--exclude-file" in argv:
            self.seen_excludes.append(Path(argv[argv.index("--exclude-file") + 1]).read_bytes())
        result = self._answer(argv)
        for line in result.stdout.splitlines():
            on_record(line)
        return result

    def commands(self):
        return [self.command(argv) for argv in self.calls]


@pytest.fixture
def node(tmp_path, monkeypatch):
    monkeypatch.delenv("CREDENTIALS_DIRECTORY", raising=False)
    (tmp_path / "pw").write_text("secret\n")
    for kind in ("results", "videos"):
        (tmp_path / kind).mkdir()
    conf = tmp_path / "backup.conf"
    conf.write_text(f"[paths]\nresults = {tmp_path}/results\nvideos = {tmp_path}/videos\nstate_dir = {tmp_path}/state\n"
                    f"upstream_config = {tmp_path}/none\n[offsite]\nrepository = {tmp_path}/repo\n"
                    f"password_file = {tmp_path}/pw\n")
    return load_config(conf)


def script(monkeypatch, **answers):
    restic = Restic(**answers)
    monkeypatch.setattr(offsite_run, "execute", restic)
    return restic


def go(config, **kw):
    return offsite_run.run_offsite(config, clock=lambda: NOW, **kw)


def test_a_run_sends_a_snapshot_applies_retention_and_records_it(node, monkeypatch, journal):
    restic = script(monkeypatch, backup=(0, '{"message_type":"status","percent_done":0.5}\n' + SUMMARY + "\n", ""),
                    stats=(0, '{"total_size": 123456}\n', ""))
    assert go(node) == 0
    assert restic.commands() == ["backup"]                 # the first snapshot: nothing of ours to forget
    state = load_offsite(node.offsite_file)
    assert (state.outcome, state.last.id, state.last.files, state.last.bytes, state.last.added, state.last.time,
            state.repository_bytes, state.forgot, state.pruned, state.failures, state.pid) == (
        "ok", "1234abcd", 3, 2900, 3000, NOW, 0, 0.0, 0.0, 0, 0)
    restic = script(monkeypatch, backup=(0, SUMMARY + "\n", ""), stats=(0, '{"total_size": 123456}\n', ""))
    assert offsite_run.run_offsite(node, clock=lambda: NOW + 600) == 0
    assert restic.commands() == ["backup", "forget", "stats"]          # nothing forgotten: nothing to prune
    state = load_offsite(node.offsite_file)
    assert (state.repository_bytes, state.forgot, state.pruned) == (123456, NOW + 600, 0.0)
    sent = [r for r in journal.records if "second copy sent" in r.getMessage()]
    assert len(sent) == 2 and "snapshot 1234abcd: 3 files" in sent[0].getMessage()
    assert (sent[0].OFFSITE_RESULT, sent[0].OFFSITE_SNAPSHOT, sent[0].OFFSITE_BYTES_ADDED) == ("ok", "1234abcd", 3000)


@pytest.mark.parametrize("stderr, problem", [
    ("Fatal: wrong password or no key found\n", "wrong password"),
    ("Fatal: unable to save snapshot: write /r/data/x: no space left on device\n", "repository full"),
])
def test_a_failed_run_is_one_line_recorded_and_counted(node, monkeypatch, journal, stderr, problem):
    script(monkeypatch, backup=(1, "", stderr))
    assert go(node) == 1
    state = load_offsite(node.offsite_file)
    assert (state.outcome, state.problem, state.failures, state.since, state.last) == ("failed", problem, 1, NOW, None)
    errors = [r for r in journal.records if r.levelname == "ERROR"]
    assert len(errors) == 1 and problem in errors[0].getMessage() and errors[0].OFFSITE_RESULT == "failed"
    script(monkeypatch, backup=(1, "", stderr))
    offsite_run.run_offsite(node, clock=lambda: NOW + 10)
    assert (load_offsite(node.offsite_file).failures, load_offsite(node.offsite_file).since) == (2, NOW)


def test_after_a_run_that_did_not_end_well_stale_locks_go_first(node, monkeypatch):
    unreachable = (1, "", "subprocess ssh: ssh: connect to host x port 22: No route to host\n")
    restic = script(monkeypatch, backup=unreachable)
    assert go(node) == 1 and load_offsite(node.offsite_file).problem == "repository unreachable"
    restic = script(monkeypatch, unlock=unreachable)
    assert go(node) == 1
    assert restic.commands() == ["unlock"] and load_offsite(node.offsite_file).failures == 2
    restic = script(monkeypatch, backup=(0, SUMMARY + "\n", ""))
    assert go(node) == 0 and restic.commands() == ["unlock", "backup"]


def test_the_retention_runs_once_a_day_and_a_prune_only_when_it_frees_something(node, monkeypatch):
    forgot_two = json.dumps([{"keep": [{}], "remove": [{}, {}]}])

    def at(moment, *commands, **answers):
        restic = script(monkeypatch, backup=(0, SUMMARY + "\n", ""), forget=(0, forgot_two + "\n", ""),
                        stats=(0, '{"total_size": 777}\n', ""), **answers)
        assert offsite_run.run_offsite(node, clock=lambda: moment) == 0
        assert restic.commands() == list(commands)
        return load_offsite(node.offsite_file)
    at(NOW, "backup")
    state = at(NOW + 600, "backup", "forget", "prune", "stats")
    assert (state.forgot, state.pruned, state.forgotten, state.repository_bytes) == (NOW + 600, NOW + 600, 0, 777)
    state = at(NOW + 1200, "backup")                                     # the same day: the size added up
    assert state.repository_bytes == 777 + 3000
    state = at(NOW + 600 + 86400, "backup", "forget", "stats")          # a prune only a week after the last
    assert state.forgotten == 2


def test_a_backup_that_names_no_snapshot_is_a_failure(node, monkeypatch):
    script(monkeypatch, backup=(0, '{"message_type":"summary","data_added":5}\n', ""))
    assert go(node) == 1
    assert load_offsite(node.offsite_file).message == "restic ended without naming the snapshot it took"


def test_unreadable_files_keep_the_snapshot_and_fail(node, monkeypatch):
    error = '{"message_type":"error","error":"permission denied","item":"/r/x.h264"}'
    script(monkeypatch,
           backup=(3, error + "\n" + SUMMARY + "\n", "Warning: at least one source file could not be read\n"))
    assert go(node) == 1
    state = load_offsite(node.offsite_file)
    assert (state.outcome, state.problem, state.last.id) == ("failed", "files not readable", "1234abcd")
    assert "1 file(s) not read, e.g. /r/x.h264: permission denied" in state.message


def test_a_failed_retention_fails_the_run_with_the_snapshot_kept(node, monkeypatch):
    script(monkeypatch, backup=(0, SUMMARY + "\n", ""),
           forget=(1, "", "Fatal: repository is already locked by PID 3\n"))
    assert go(node) == 0                                   # the first snapshot: no retention yet
    assert offsite_run.run_offsite(node, clock=lambda: NOW + 60) == 1
    state = load_offsite(node.offsite_file)
    assert (state.problem, state.last.id) == ("repository locked", "1234abcd")
    assert state.message.startswith("snapshot sent, retention failed: ")


def test_a_stop_is_recorded_as_interrupted(node, monkeypatch):
    script(monkeypatch, backup=(130, "", "signal interrupt received, cleaning up\n", "interrupted"))
    assert go(node, stop=threading.Event()) == 1
    assert load_offsite(node.offsite_file).outcome == "interrupted"


def test_without_a_password_nothing_runs(node, monkeypatch, tmp_path):
    (tmp_path / "pw").unlink()
    restic = script(monkeypatch)
    assert go(node) == 1
    assert restic.calls == [] and load_offsite(node.offsite_file).problem == "no password"


def test_not_due_and_not_configured_do_nothing(node, monkeypatch):
    restic = script(monkeypatch, backup=(0, SUMMARY + "\n", ""))
    assert go(node) == 0
    restic.calls.clear()
    assert go(node, if_due=True) == 0 and restic.calls == []
    assert go(node.changed(offsite={"repository": None})) == 0 and restic.calls == []


def test_a_second_run_is_refused_with_75(node, monkeypatch):
    script(monkeypatch)
    with pass_lock(offsite_run.lock_file(node)):
        assert go(node) == 75


def test_a_database_no_pass_verified_is_checked_here_and_held_back_when_not_sound(node, monkeypatch, tmp_path, journal):
    import sqlite3
    folder = tmp_path / "results" / ID / "ETHOSCOPE_001" / "2026-01-01_00-00-00"
    folder.mkdir(parents=True)
    (folder / "good.db").write_bytes(b"g")                          # verified by the pass (its record)
    with sqlite3.connect(folder / "old.db") as db:                 # left by the upstream tool: sound
        db.execute("CREATE TABLE t(x)")
    db.close()
    (folder / "odd*name.db").write_bytes(b"not a database " * 100)    # damaged
    record = DatabaseRecord([1, "m", -1, ""], True, 1, "recovered", NOW)
    save_history(node.history_file, History(devices={ID: DeviceHistory(
        id=ID, databases={f"{ID}/ETHOSCOPE_001/2026-01-01_00-00-00/good.db": record})}))
    restic = script(monkeypatch, backup=(0, SUMMARY + "\n", ""))
    assert go(node) == 0
    assert restic.seen_excludes == [str(folder).encode() + b"/odd\\*name.db\n"]
    state = load_offsite(node.offsite_file)
    assert state.held_back == 1
    assert state.held_examples == [f"results/{ID}/ETHOSCOPE_001/2026-01-01_00-00-00/odd*name.db"]
    said = [r.getMessage() for r in journal.records if r.levelname == "ERROR"]
    assert len(said) == 1 and "odd*name.db held back: not sound on this node: not a sound database" in said[0]
    ledger = json.loads((node.paths.state_dir / "offsite-ledger.json").read_text())["databases"]
    assert sorted(ledger) == [f"{ID}/ETHOSCOPE_001/2026-01-01_00-00-00/good.db",
                              f"{ID}/ETHOSCOPE_001/2026-01-01_00-00-00/old.db"]      # checked once, remembered
