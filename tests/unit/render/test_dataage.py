"""The data age: the store records up to when each device's data is on the node, and every view
shows it (the /status document, ethoscope-backup status, the page, /metrics, the stale alert)."""
import re

from ethoscope_rsync.alerts import conditions as alerts
from ethoscope_rsync.render import alert as render_alert
from ethoscope_rsync.render.terminal import terminal_status
from ethoscope_rsync.render.upstream import render_html, render_metrics, status_document
from ethoscope_rsync.state import events as ev
from ethoscope_rsync.state.alerts import STALE, Change
from ethoscope_rsync.state.history import History
from ethoscope_rsync.state.model import Status
from ethoscope_rsync.state.store import StatusStore

A, B, C = "a" * 32, "b" * 32, "c" * 32
NOW = 1_800_000_000.0


def store_with(tmp_path, copies):
    """copies: (key, name, started, ok, database verdicts) replayed through the real store."""
    store = StatusStore(tmp_path / "status.json", History(), pid=1, what="unified", interval=0)
    for key, name, started, ok, verdicts in copies:
        if key not in store.status.devices:
            store.add_device(key, name, "169.254.9.%d" % len(store.status.devices))
        store.apply(ev.Started(key, 1, started))
        for i, verdict in enumerate(verdicts):
            store.apply(ev.DatabaseChecked(key, f"{key}/x/{i}.db", verdict, 1, "", verdict in ("ok", "unchanged")))
        store.apply(ev.Finished(key, ok, "done" if ok else "lost", started + 5))
    return store


def test_protected_up_to_is_the_start_of_the_last_copy_that_took_everything(tmp_path):
    store = store_with(tmp_path, [(A, "ETHOSCOPE_001", NOW - 900, True, ["ok", "unchanged"]),
                                  (A, "ETHOSCOPE_001", NOW - 600, False, []),                 # failed: no
                                  (A, "ETHOSCOPE_001", NOW - 300, True, ["ok", "kept previous copy"]),  # held: no
                                  (B, "ETHOSCOPE_002", NOW - 60, True, ["not verified"]),
                                  (C, "ETHOSCOPE_003", NOW - 120, True, [])])
    devices = store.history.devices
    assert devices[A].protected_up_to == NOW - 900
    assert devices[A].last_success == NOW - 295         # succeeded, yet a database copy is behind
    assert devices[B].protected_up_to == 0.0             # never whole
    assert devices[C].protected_up_to == NOW - 120
    assert History.from_json(store.history.to_json()).devices[A].protected_up_to == NOW - 900


def documents(tmp_path):
    store = store_with(tmp_path, [(A, "ETHOSCOPE_001", NOW - 900, True, []),
                                  (B, "ETHOSCOPE_002", NOW - 60, True, []),
                                  (C, "ETHOSCOPE_003", NOW - 30, False, [])])
    store.finish("failed", "1 failed", completed=True)
    return store.status.to_json(), store.history.to_json()


def test_status_document_names_each_lag_and_the_worst(tmp_path):
    status, history = documents(tmp_path)
    doc = status_document(status, history, NOW, 86400.0, 14.0)
    assert doc["devices"][A]["protected_up_to"] == NOW - 900 and doc["devices"][A]["lag_seconds"] == 900.0
    assert doc["devices"][B]["lag_seconds"] == 60.0
    assert doc["devices"][C]["lag_seconds"] is None and doc["devices"][C]["protected_up_to"] == 0
    assert (doc["worst_lag_seconds"], doc["worst_lag_device"]) == (900.0, "ETHOSCOPE_001")


def test_metrics_page_and_terminal_show_the_lag(tmp_path):
    status, history = documents(tmp_path)
    text = render_metrics(status, history, NOW, 86400.0, 14.0)
    assert re.search(r'^ethoscope_backup_device_lag_seconds\{device_id="%s",device_name="ETHOSCOPE_001"\} 900$' % A,
                     text, re.M)
    assert re.search(r'^ethoscope_backup_device_lag_seconds\{device_id="%s",device_name="ETHOSCOPE_003"\} \+Inf$' % C,
                     text, re.M)
    assert re.search(r"^ethoscope_backup_worst_lag_seconds 900$", text, re.M)
    page = render_html(status, history, NOW, 86400.0, 14.0)
    summary = re.search(r'<p class="summary" id="summary">(.*?)</p>', page).group(1)
    assert "Worst lag: 15 min (ETHOSCOPE_001)." in summary
    assert page.count('class="small lag"') == 2
    lines = terminal_status(status, history, NOW, 86400.0, 14.0)
    assert lines[1].split()[5] == "LAG"
    row = next(line for line in lines if line.startswith("ETHOSCOPE_002"))
    assert row.split()[6] == "60"       # "60 s" under LAG, after the date, time and age
    assert any(line.startswith("worst lag: 15 min (ETHOSCOPE_001)") for line in lines)


def test_the_stale_alert_says_up_to_when_the_data_is_on_the_node(tmp_path):
    status, history = documents(tmp_path)
    found = {c.subject: c for c in alerts.device_conditions(History.from_json(history), Status.from_json(status),
                                                            NOW, 600.0, 5)}
    stale = found["device:" + A]
    assert stale.problem == STALE
    words = render_alert.describe(Change(stale, False, STALE, stale.since), NOW)
    assert "its data is on the node only up to" in words and "(15 min ago)" in words
    never = found["device:" + C]
    assert "none of its data is known to be whole on the node yet" in render_alert.describe(
        Change(never, False, STALE, never.since), NOW)
