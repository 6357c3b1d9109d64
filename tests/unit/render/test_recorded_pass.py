"""A real pass recorded on the simulated lab (tests/fixtures/pass-events.json, made by
``python3 -m tests.lab.record``: two devices backed up, the third cut off), replayed through the
store and rendered: what the node's reader and the operator see of it."""
import json

import pytest

from tests.fixtures.status import build, recorded_pass
from ethoscope_rsync.state import events as ev
from ethoscope_rsync.render import upstream as render

DAY = 86400.0


@pytest.fixture(scope="module")
def recorded():
    return recorded_pass()


@pytest.fixture(scope="module")
def documents(recorded):
    return build(recorded)


def test_the_recording_is_a_pass_of_three_devices(recorded):
    assert [name for _, name, _ in recorded.devices] == ["ETHOSCOPE_001", "ETHOSCOPE_002", "ETHOSCOPE_003"]
    finished = {e.key: e.ok for e in recorded.events if isinstance(e, ev.Finished)}
    assert sorted(finished.values()) == [False, True, True]


def test_every_listed_file_is_published_by_name_with_its_node_size(recorded, documents):
    """In the device's own document every file; in /status every database (and no video)."""
    now = recorded.events[-1].at + 60
    doc = render.status_document(*documents, now, DAY, horizon_days=14.0)
    for event in recorded.events:
        if isinstance(event, ev.Listed):
            published = render.device_document(*documents, event.key, now, DAY)["device"]["synced"][
                event.kind]["detailed_files"]
            in_status = doc["devices"][event.key]["synced"][event.kind]["detailed_files"]
            assert set(in_status) == {p.rsplit("/", 1)[-1] for p, _ in event.files if p.endswith(".db")}
            for path, size in event.files:
                record = published[path.rsplit("/", 1)[-1]]
                assert (record["path"], record["size_bytes"]) == (path, size)
                assert isinstance(record["size_human"], str) and record["size_human"]


def test_databases_are_listed_where_the_node_looks_for_them(recorded, documents):
    doc = render.status_document(*documents, recorded.events[-1].at + 60, DAY, horizon_days=14.0)
    checked = [e for e in recorded.events if isinstance(e, ev.DatabaseChecked)]
    assert len(checked) == 2 and all(e.verdict == "ok" and e.rows > 0 for e in checked)
    for event in checked:
        device = doc["devices"][event.key]
        assert event.path.rsplit("/", 1)[-1] in device["synced"]["results"]["detailed_files"]
        assert device["databases"][event.path]["rows"] == event.rows


def test_the_failed_device_says_why(recorded, documents):
    (failed,) = [e for e in recorded.events if isinstance(e, ev.Finished) and not e.ok]
    doc = render.status_document(*documents, failed.at + 60, DAY, horizon_days=14.0)
    device = doc["devices"][failed.key]
    assert device["status"] == "error" and device["progress"]["status"] == "error"
    assert device["last_error"] == failed.message and device["stale"]
    assert doc["run"]["outcome"] == "failed" and doc["run"]["devices_failed"] == 1
    json.dumps(doc, allow_nan=False)
