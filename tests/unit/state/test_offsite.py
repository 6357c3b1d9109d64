"""The second copy's state file: tolerant reading, the lag, staleness, a killed run, and how readers
attach it to the history."""
import json

from ethoscope_rsync.state import offsite
from ethoscope_rsync.state.history import History
from ethoscope_rsync.state.offsite import Check, OffsiteState, Snapshot
from ethoscope_rsync.state.store import load_ledger, load_offsite, save_ledger, save_offsite

NOW = 1_800_000_000.0
STATE = OffsiteState(repository="sftp:nas:/r", started=NOW - 60, ended=NOW - 30, outcome="ok", message="sent",
                     last=Snapshot("1234abcd", NOW - 60, 10, 1000, 100, 3.5), repository_bytes=900, held_back=1,
                     held_examples=["results/x.db"], good_passes=7, pruned=NOW - 60, check=Check(NOW - 99, "2/12"),
                     next_group=3, alert_after=2.0)


def test_the_state_goes_round_the_file(tmp_path):
    save_offsite(tmp_path / "offsite.json", STATE)
    assert load_offsite(tmp_path / "offsite.json") == STATE
    assert load_offsite(tmp_path / "missing.json") == OffsiteState()
    save_ledger(tmp_path / "offsite.json", {"a/b.db": (1, 2)})
    assert load_ledger(tmp_path / "offsite.json") == {"a/b.db": (1, 2)}


def test_a_hand_edited_or_hostile_file_is_read_as_far_as_it_is_sound():
    data = STATE.to_json()
    data.update(last={"id": "../../x", "time": NOW}, check={"at": "yesterday"}, failures="many", next_group=-4,
                held_examples=["a" * 9999] * 500, message="m" * 10000)
    state = OffsiteState.from_json(data)
    assert state.last is None and state.check is None and state.failures == 0 and state.next_group == 1
    assert len(state.held_examples) == offsite.HELD_LISTED and len(state.held_examples[0]) == 500
    assert len(state.message) == 500
    assert OffsiteState.from_json([1, 2]) == OffsiteState() and OffsiteState.from_json(None) == OffsiteState()
    assert offsite.ledger_from_json(
        {"databases": {"a": [1, 2], "b": [1, "x"], "c": [True, 1], "d": 7}}) == {"a": (1, 2)}


def test_lag_and_staleness():
    assert STATE.age(NOW) == 60 and not STATE.old(NOW) and STATE.old(NOW + 2 * 86400)
    assert OffsiteState().age(NOW) is None and not OffsiteState().old(NOW)          # never ran: not flagged
    assert OffsiteState(outcome="failed", alert_after=2.0).old(NOW)                  # ran, never sent
    assert not OffsiteState(outcome="ok", last=STATE.last, alert_after=0).old(NOW + 1e9)


def test_a_run_whose_process_is_gone_is_interrupted():
    running = OffsiteState(outcome="running", pid=4242)
    assert offsite.settled(running, lambda pid: True) == running
    assert offsite.settled(running, lambda pid: False).outcome == "interrupted"


def test_readers_attach_it_to_the_history_which_never_writes_it():
    document = offsite.attach({"last_backup": 5.0}, STATE.to_json())
    history = History.from_json(json.loads(json.dumps(document)))
    assert history.offsite == STATE and history.last_backup == 5.0
    assert "offsite" not in history.to_json()
    assert offsite.attach(None, STATE.to_json()) == {"offsite": STATE.to_json()}
    assert offsite.attach({"a": 1}, None) == {"a": 1} and History.from_json({"offsite": "x"}).offsite is None
