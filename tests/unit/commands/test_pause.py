"""pause and resume: the state file they write, the devices and dates they accept, and what a paused
device means to a pass, the alerts, the retirement of old devices and the verdict."""
import json
import time

import pytest

from tests.fixtures.status import A, B, NOW, build, example_pass
from ethoscope_rsync.alerts.conditions import device_conditions
from ethoscope_rsync.commands import pause as command
from ethoscope_rsync.commands.cli import main
from ethoscope_rsync.config.devices import Device
from ethoscope_rsync.config.load import load_config
from ethoscope_rsync.render import upstream as render
from ethoscope_rsync.render import verdict
from ethoscope_rsync.state import pauses
from ethoscope_rsync.state.history import History
from ethoscope_rsync.state.model import Status

DAY = 86400.0


@pytest.fixture(autouse=True)
def _package_logger():
    """main() configures the package logger on this test's stderr: leave it as other tests expect it."""
    from ethoscope_rsync.system.logs import log
    yield
    log.handlers.clear()
    log.propagate = True


@pytest.fixture
def config(tmp_path):
    state = tmp_path / "state"
    state.mkdir()
    status, history = build(example_pass())
    (tmp_path / "status.json").write_text(json.dumps(status))
    (state / "history.json").write_text(json.dumps(history))
    conf = tmp_path / "backup.conf"
    conf.write_text(f"[paths]\nstatus_file = {tmp_path}/status.json\nstate_dir = {state}\n"
                    f"results = {tmp_path}/r\nvideos = {tmp_path}/v\nupstream_config = {tmp_path}/none\n")
    return load_config(conf)


def test_pause_and_resume_by_number_name_or_machine_id(config, capsys):
    assert main(["pause", "2", "--reason", "experiment over", "-c", str(config.source)]) == 0
    assert capsys.readouterr().out.startswith("ETHOSCOPE_002 paused: experiment over until: ethoscope-backup resume")
    entry = pauses.load(config.pauses_file)["ETHOSCOPE_002"]
    assert entry.id == B and entry.pause.reason == "experiment over" and entry.pause.until == 0
    assert main(["resume", B, "-c", str(config.source)]) == 0
    assert pauses.load(config.pauses_file) == {} and "resumed" in capsys.readouterr().out
    assert main(["resume", "ETHOSCOPE_002", "-c", str(config.source)]) == 0
    assert "is not paused" in capsys.readouterr().out


def test_bad_devices_and_dates_are_one_line_and_exit_2(config, capsys):
    assert main(["pause", "not-a-device", "-c", str(config.source)]) == 2
    assert main(["pause", "c" * 32, "-c", str(config.source)]) == 2          # unknown machine id
    assert main(["pause", "4", "--until", "tomorrow", "-c", str(config.source)]) == 2
    assert main(["pause", "4", "--until", "2001-01-01", "-c", str(config.source)]) == 2
    assert main(["pause", "4", "--until", "2099-02-30", "-c", str(config.source)]) == 2
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 5 and "already past" in out[3] and "not a date" in out[4]
    assert not config.pauses_file.exists()


def test_until_ends_the_pause_by_itself():
    end = command.parse_until("2099-03-01 08:30", NOW)
    assert time.localtime(end)[:5] == (2099, 3, 1, 8, 30)
    paused = {"ETHOSCOPE_002": pauses.Paused("ETHOSCOPE_002", B, pauses.Pause("x", NOW, NOW + 10))}
    devices = {B: Device("ETHOSCOPE_002", "169.254.1.2", B)}
    assert set(pauses.active(paused, devices, NOW)) == {B} and pauses.active(paused, devices, NOW + 11) == {}


def test_a_pass_leaves_paused_devices_out(config):
    command.pause(config, "2", "off", None, out=lambda line: None)
    devices = (Device("ETHOSCOPE_001", "169.254.1.1", A), Device("ETHOSCOPE_002", "169.254.1.2", B))
    assert [d.name for d in pauses.not_paused(devices, config.pauses_file, time.time())] == ["ETHOSCOPE_001"]
    assert pauses.keys(config.pauses_file, time.time()) == {"ETHOSCOPE_002", B}


def test_no_alert_about_a_paused_device_and_it_is_never_retired(tmp_path):
    status, history = build(example_pass())
    h, s = History.from_json(history), Status.from_json(status)
    found = {c.subject: c.problem for c in device_conditions(h, s, NOW + 3 * DAY, DAY, 1, paused={"ETHOSCOPE_002"})}
    assert found["device:" + B] is None and found["device:" + A] == "stale"
    from ethoscope_rsync.state.store import StatusStore
    store = StatusStore(tmp_path / "status.json", h, None, pid=1, what="unified", interval=1.0)
    assert store.retire(NOW + 60 * DAY, 30 * DAY, keep={"ETHOSCOPE_002"}) == [A]     # unpinned: said by key
    assert list(h.devices) == [B]


def test_paused_everywhere_it_is_shown(tmp_path):
    status, history = build(example_pass())
    doc = pauses.to_json({"ETHOSCOPE_002": pauses.Paused("ETHOSCOPE_002", B, pauses.Pause("experiment over", NOW))})
    history = pauses.attach(history, doc)
    judged = verdict.judged(status, history, NOW, DAY, 0.0)
    assert judged.level == "ok" and verdict.line(judged, NOW).startswith("1/1 safe, 1 paused")
    assert "ETHOSCOPE_002 paused: experiment over" in verdict.line(judged, NOW)
    page = render.render_html(status, history, NOW, DAY, horizon_days=14.0)
    assert 'class="device paused"' in page and "paused: experiment over" in page
    metrics = verdict.verdict_metrics(judged)
    assert 'ethoscope_backup_device_paused{device_id="%s",device_name="ETHOSCOPE_002"} 1' % B in metrics
    assert verdict.document(judged, NOW)["paused_devices"][0]["reason"] == "experiment over"
