"""``ethoscope-backup status``'s table rows (the command itself: tests/unit/commands/test_cli.py)."""
from ethoscope_rsync.render.terminal import status_rows


def test_status_rows_merge_history():
    from tests.fixtures.status import build, scripted_pass
    status, history = build(scripted_pass(3, chunks=1, now=1000.0, failing=0))
    history["devices"]["b" * 32] = {"name": "ETHOSCOPE_009", "last_outcome": "error", "last_error": "gone"}
    rows = status_rows(status, history, now=1000.0, stale_after=86400.0)
    assert [row[:2] for row in rows] == [("ETHOSCOPE_001", "completed"), ("ETHOSCOPE_002", "completed"),
                                         ("ETHOSCOPE_003", "completed"), ("ETHOSCOPE_009", "error (stale)")]
    assert rows[0][3:] == ("9 min", "9 min", "96.7 MB", "ssh default", "")   # ended at 431: 569 s ago; database + chunk
    assert rows[3][2:] == ("never", "-", "-", "0 B", "-", "gone")          # not in the pass: no cipher


def test_status_rows_say_paused_for_a_paused_device():
    """The table's STATE says what the verdict line says: paused (not its last state, never stale)."""
    from tests.fixtures.status import build, scripted_pass
    from ethoscope_rsync.state import pauses
    from ethoscope_rsync.state.health import Pause
    status, history = build(scripted_pass(2, chunks=1, now=1000.0, failing=0.5))
    paused = {"ETHOSCOPE_002": pauses.Paused("ETHOSCOPE_002", "", Pause("flies changed", 900.0, 0.0))}
    rows = status_rows(status, pauses.attach(history, pauses.to_json(paused)), now=1000.0, stale_after=86400.0)
    assert [row[:2] for row in rows] == [("ETHOSCOPE_001", "completed"), ("ETHOSCOPE_002", "paused")]
    ended = {"ETHOSCOPE_002": pauses.Paused("ETHOSCOPE_002", "", Pause("", 900.0, 950.0))}    # --until passed
    rows = status_rows(status, pauses.attach(history, pauses.to_json(ended)), now=1000.0, stale_after=86400.0)
    assert rows[1][1] == "error (stale)"
