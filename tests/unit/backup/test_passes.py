"""The end of a pass (runner._end): its final status and history are written whatever happened,
and one that cannot be written never costs the other."""

from ethoscope_rsync.state import events as ev
from ethoscope_rsync.system.exits import EXIT_FAILED, EXIT_OK
from ethoscope_rsync.state.history import History
from ethoscope_rsync.system.logs import Notifier
from ethoscope_rsync.backup.passes import _end
from ethoscope_rsync.state.store import StatusStore, load_history, load_status
from tests.unit.backup.job_fakes import MID


def a_pass(path):
    store = StatusStore(path, History(), pid=1, what="unified", interval=60)
    store.add_device(MID, "ETHOSCOPE_004", "169.254.9.4")
    store.apply(ev.Started(MID, 1, 1000.0))
    store.apply(ev.Finished(MID, True, "Backup completed successfully", 1001.0))
    return store


def test_both_are_written(config, tmp_path):
    config.paths.state_dir.mkdir(parents=True)
    store = a_pass(tmp_path / "status.json")
    assert _end(config, store, Notifier(), "completed", "1 device", EXIT_OK, completed=True) == EXIT_OK
    assert load_status(tmp_path / "status.json").run.outcome == "completed"
    assert load_history(config.history_file).devices[MID].last_outcome == "completed"


def test_a_status_that_cannot_be_written_does_not_lose_the_history(config, tmp_path, caplog):
    config.paths.state_dir.mkdir(parents=True)
    (tmp_path / "run").write_text("a file where a folder should be")
    store = a_pass(tmp_path / "run" / "status.json")
    assert _end(config, store, Notifier(), "completed", "1 device", EXIT_OK, completed=True) == EXIT_FAILED
    assert load_history(config.history_file).devices[MID].last_outcome == "completed"
    assert "cannot write the status: File exists" in caplog.text


def test_a_history_that_cannot_be_written_does_not_lose_the_status(config, tmp_path, caplog):
    config.paths.state_dir.parent.mkdir(parents=True, exist_ok=True)
    config.paths.state_dir.write_text("a file where a folder should be")
    store = a_pass(tmp_path / "status.json")
    assert _end(config, store, Notifier(), "failed", "1 failed", 1) == 1
    assert load_status(tmp_path / "status.json").run.outcome == "failed"
    assert "cannot write the history: File exists" in caplog.text
