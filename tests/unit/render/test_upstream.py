"""Unit tests of ethoscope_rsync.render.upstream, on documents written by the real store from a pass's events
(scripted here, recorded on the lab in test_recorded_pass.py). The upstream sample is only a shape."""
import copy
import json
import os
import time

import pytest

from tests.fixtures.status import A, B, NOW, Pass, build, example_pass, scripted_pass
from ethoscope_rsync.state import events as ev
from ethoscope_rsync.render import upstream as render
from ethoscope_rsync.state.history import NEWEST_KEPT, Inventory
from ethoscope_rsync.state.model import is_stale

HERE = os.path.dirname(os.path.abspath(__file__))
FIXTURES = os.path.join(HERE, "..", "..", "fixtures")
DAY = 86400.0


def upstream_sample():
    # a real /status answer of the upstream tool (two simulated devices, the second failed)
    with open(os.path.join(FIXTURES, "upstream-status-sample.json")) as f:
        return json.load(f)


def key_paths(doc, prefix=()):
    """All key paths, with device ids → <ID> and file names → <FILE>."""
    out = set()
    if isinstance(doc, dict):
        for k, v in doc.items():
            if prefix and prefix[-1] == "devices":
                k = "<ID>"
            elif prefix and prefix[-1] in ("files", "detailed_files"):
                k = "<FILE>"
            p = prefix + (k,)
            out.add(p)
            out |= key_paths(v, p)
    return out


@pytest.fixture
def done():
    return build(example_pass())


def video_record(path) -> bool:
    """A key path inside one video file's record: /status leaves those to /status/<device> (the
    node's reader lists the videos of its own disk when /status names none)."""
    return "<FILE>" in path and "videos" in path


def test_every_upstream_key_path_exists(done):
    ours = render.status_document(*done, NOW, DAY, horizon_days=14.0)
    missing = key_paths(upstream_sample()) - key_paths(ours)
    assert missing and all(video_record(p) for p in missing), sorted(missing)
    device = render.device_document(*done, A, NOW, DAY)["device"]
    assert {p[2:] for p in missing} - key_paths(device) == set()


def test_every_device_has_every_device_level_path(done):
    wanted = {p[2:] for p in key_paths(upstream_sample()) if p[0] == "devices" and len(p) > 2 and "<FILE>" not in p}
    for key, device in render.status_document(*done, NOW, DAY, horizon_days=14.0)["devices"].items():
        assert wanted - key_paths(device) == set(), key


def test_values_are_ours_and_correct(done):
    doc = render.status_document(*done, NOW, DAY, horizon_days=14.0)
    a, b = doc["devices"][A], doc["devices"][B]
    assert (a["status"], a["progress"]["status"], a["progress"]["backup_method"]) == ("completed", "completed", "rsync")
    assert (b["status"], b["progress"]["status"]) == ("error", "error")
    assert b["last_error"] == "error in rsync protocol data stream (connection lost)"
    assert a["ended"] == int(NOW - 3600 - 570) and a["processing"] is False and a["count"] == 1
    assert not a["stale"] and b["stale"] and doc["stale_devices"] == [B]
    assert doc["status"] == "idle" and doc["run"]["outcome"] == "failed"
    assert doc["last_backup"] == render.format_time(NOW - 3600 - 559)   # the pass ended, one device failed
    assert doc["current_device"] is None and doc["processing_devices"] == []


def test_status_names_every_database_and_no_video(done):
    """What the node's reader looks up: each database by file name under synced.results, with the
    node copy's size; no video anywhere, so that it lists every chunk from its own disk
    (synced.videos.directory, local_files > 0)."""
    a = render.status_document(*done, NOW, DAY, horizon_days=14.0)["devices"][A]
    results = a["synced"]["results"]["detailed_files"]
    assert sorted(results) == [f"2025-03-01_10-00-00_{A}.db", f"2025-03-08_10-00-00_{A}.db"]
    assert results[f"2025-03-08_10-00-00_{A}.db"]["size_bytes"] == 106496
    assert results[f"2025-03-08_10-00-00_{A}.db"]["size_human"] == "104.0 KB"
    assert a["synced"]["videos"]["detailed_files"] == {} and a["transfer_details"]["videos"]["files"] == {}
    assert a["transfer_details"]["videos"]["total_files"] == 2             # received in this pass
    assert a["synced"]["videos"]["local_files"] == 3 and a["synced"]["results"]["local_files"] == 2
    assert a["synced"]["videos"]["directory"] == "/ethoscope_data/videos"
    assert a["synced"]["transfer_details"] == a["transfer_details"]


def test_the_device_document_names_its_newest_files(done):
    a = render.device_document(*done, A, NOW, DAY)["device"]
    videos = a["synced"]["videos"]["detailed_files"]
    assert len(videos) == 3 and all(f["size_bytes"] == 64 << 20 for f in videos.values())
    first = videos[f"2025-03-08_10-30-00_{A}_40f0_1280x960@25_00001.h264"]
    assert first["transfer_speed"] == "4.57MB/s" and first["status"] == "completed"
    assert first["path"].startswith(A + "/ETHOSCOPE_001/")
    assert len(a["transfer_details"]["videos"]["files"]) == 2            # received in this pass
    assert len(a["synced"]["results"]["detailed_files"]) == 2


def test_a_week_of_chunks_and_fifty_databases():
    """/status lists every database however many files the device has, and no chunk; the device's
    own document its newest FILES_LISTED files plus every database."""
    status, history = build(example_pass())
    inventory = history["devices"][A]["inventory"]
    dbs = {f"{A}/ETHOSCOPE_001/2025-01-{n // 10 + 1:02d}_{n % 10:02d}-00-00/x{n:02d}_{A}.db": 4096 + n
           for n in range(50)}
    chunks = {f"{A}/ETHOSCOPE_001/2025-03-09_10-00-00/c_{A}_{n:05d}.h264": 1 << 20 for n in range(2000)}
    notes = {f"{A}/ETHOSCOPE_001/2025-03-09_10-00-00/n{n:04d}.txt": 10 for n in range(600)}
    inventory["results"] = Inventory.of({**dbs, **notes}, (0, 0), (0, 0)).to_json()
    inventory["videos"] = Inventory.of(chunks, (0, 0), (0, 0)).to_json()
    a = render.status_document(status, history, NOW, DAY, horizon_days=14.0)["devices"][A]
    received = f"2025-03-08_10-00-00_{A}.db"            # in this pass: listed too
    assert set(a["synced"]["results"]["detailed_files"]) == {p.rsplit("/", 1)[1] for p in dbs} | {received}
    assert a["synced"]["videos"]["detailed_files"] == {} and a["synced"]["videos"]["local_files"] == 2000
    own = render.device_document(status, history, A, NOW, DAY)["device"]     # (the history's own: the
    assert len(own["synced"]["videos"]["detailed_files"]) == NEWEST_KEPT + 2    # status service adds more)
    listed = own["synced"]["results"]["detailed_files"]
    assert len(listed) == NEWEST_KEPT + 51 and all(p.rsplit("/", 1)[1] in listed for p in dbs)


def test_disk_usage_summary_adds_up(done):
    summary = render.status_document(*done, NOW, DAY, horizon_days=14.0)["disk_usage_summary"]
    assert summary["results"]["total_files"] == 2 and summary["results"]["total_size_bytes"] == 106496 + 4096
    assert summary["videos"]["total_size_bytes"] == 3 * (64 << 20)
    assert summary["combined"]["total_files"] == 5 and summary["combined"]["total_size_human"] == "192.1 MB"


def test_while_running():
    status, history = build(example_pass(running=True), finish=False)
    doc = render.status_document(status, history, NOW, DAY, horizon_days=14.0)
    a = doc["devices"][A]
    assert doc["status"] == "running" and a["processing"] and a["ended"] == 0
    assert a["progress"]["backup_status"] == 75.0 and a["progress"]["rate_bps"] == 4500000
    assert doc["current_device"] == "ETHOSCOPE_001"
    assert {d["device_name"] for d in doc["processing_devices"]} == {"ETHOSCOPE_001", "ETHOSCOPE_002"}
    assert render.root_document(status, history)["status"] == "running"
    assert render.next_change(status, history, NOW, DAY) == NOW + 1


def test_inputs_not_modified(done):
    status, history = copy.deepcopy(done)
    render.status_document(status, history, NOW, DAY, horizon_days=14.0)
    render.render_html(status, history, NOW, DAY, horizon_days=14.0)
    render.render_metrics(status, history, NOW, DAY, horizon_days=14.0)
    assert (status, history) == done


def test_history_only_devices_appear(done):
    status, history = done
    history["devices"]["f" * 32] = {"name": "ETHOSCOPE_017", "last_outcome": "completed",
                                    "last_success": NOW - 3600, "last_bytes": 5}
    doc = render.status_document(status, history, NOW, DAY, horizon_days=14.0)
    d = doc["devices"]["f" * 32]
    assert (d["name"], d["from_history"], d["progress"]["status"], d["stale"]) == (
        "ETHOSCOPE_017", True, "completed", False)
    assert render.status_document(status, history, NOW + 2 * DAY, DAY, horizon_days=14.0)["devices"]["f" * 32]["stale"]


def test_stale_threshold():
    assert not is_stale(1000, 1000 + DAY, DAY)
    assert is_stale(1000, 1001 + DAY, DAY)
    assert is_stale(0, 5, DAY)


def test_no_files_at_all():
    doc = render.status_document(None, None, NOW, DAY, horizon_days=14.0)
    assert doc["devices"] == {} and doc["status"] == "idle" and doc["last_backup"] == ""
    assert "no backup pass yet" in doc["message"]
    assert doc["disk_usage_summary"]["combined"]["total_files"] == 0
    json.dumps(doc, allow_nan=False)


def test_after_a_reboot_from_history_only():
    status, history = build(scripted_pass(3, chunks=1, failing=0))
    doc = render.status_document(None, history, NOW, DAY, horizon_days=14.0)
    assert len(doc["devices"]) == 3 and doc["last_backup"] == render.format_time(history["last_backup"])
    assert all(d["synced"]["videos"]["local_files"] == 1 for d in doc["devices"].values())


def test_garbage_fields_do_not_crash():
    bad = {"schema": 2, "devices": {"x": {"progress": "nope", "transfers": {"results": 5, "videos": {"files": 7}},
                                          "started": "soon", "name": None}, "y": 7},
           "run": None, "last_backup": None}
    history = {"devices": [], "last_backup": float("nan")}
    doc = render.status_document(bad, history, NOW, DAY, horizon_days=14.0)
    assert "x" in doc["devices"]
    json.dumps(doc, allow_nan=False)
    render.render_html(bad, history, NOW, DAY, horizon_days=14.0)
    render.render_metrics(bad, history, NOW, DAY, horizon_days=14.0)


def test_root_document():
    status, history = build(scripted_pass(2, failing=0))
    assert render.root_document(status, history) == {
        "status": "idle", "last_backup": time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(history["last_backup"]))}
    assert render.root_document(None, None) == {"status": "idle", "last_backup": ""}


def test_device_lookup_forms(done):
    for key in (B, "ETHOSCOPE_002", "ethoscope_002", "002", "2"):
        assert render.device_document(*done, key, NOW, DAY)["id"] == B, key
    for key in ("3", "ETHOSCOPE_003", "", "../etc", "x" * 300, "0" * 4300 + "2", "ETHOSCOPE_" + "0" * 8000):
        assert render.device_document(*done, key, NOW, DAY) is None, key[:20]


def test_html_rows_problems_first_and_slow_refresh_when_idle(done):
    page = render.render_html(*done, NOW, DAY, horizon_days=14.0)
    assert page.count('<tr class="device') == 2 and '<meta http-equiv="refresh" content="30">' in page
    assert page.index("ETHOSCOPE_002") < page.index("ETHOSCOPE_001")       # the failing one first
    assert "<title>(1) ethoscope backup: 1 problem</title>" in page
    assert "ETHOSCOPE_001" in page and "connection lost" in page and "(69 min ago)" in page


def test_html_refresh_while_running_and_escaping():
    hostile = Pass(((A, 'ETHOSCOPE_<b>9"\\x</b>', "169.254.77.13"),),
                   (ev.Started(A, 1, NOW - 10), ev.Progressed(A, "results", 85, 5, 1.0, "<script>alert(1)</script>")),
                   started=NOW - 10)
    page = render.render_html(*build(hostile, finish=False), NOW, DAY, horizon_days=14.0)
    assert '<meta http-equiv="refresh" content="5">' in page and "<script>" not in page and "<b>9" not in page
    assert "&lt;b&gt;9" in page and "width:42.5%" in page


def test_html_empty():
    assert "No backup pass yet" in render.render_html(None, None, NOW, DAY, horizon_days=14.0)


def parse_metrics(text):
    samples, helps, types = {}, set(), {}
    for line in text.splitlines():
        if line.startswith("# HELP "):
            helps.add(line.split()[2])
        elif line.startswith("# TYPE "):
            types[line.split()[2]] = line.split()[3]
        elif line:
            name_labels, value = line.rsplit(" ", 1)
            samples[name_labels] = float(value)
    return samples, helps, types


def test_metrics_exposition(done):
    text = render.render_metrics(*done, NOW, DAY, horizon_days=14.0)
    assert text.endswith("\n")
    samples, helps, types = parse_metrics(text)
    assert set(types) == helps and all(name.split("{")[0] in types for name in samples)
    assert samples["ethoscope_backup_run_active"] == 0 and samples["ethoscope_backup_stale_devices"] == 1
    labels = f'device_id="{A}",device_name="ETHOSCOPE_001"'
    assert samples["ethoscope_backup_device_last_success_timestamp_seconds{%s}" % labels] == NOW - 3600 - 570
    assert samples['ethoscope_backup_device_last_outcome{device_id="%s",device_name="ETHOSCOPE_002",'
                   'outcome="error"}' % B] == 1
    assert samples["ethoscope_backup_device_files_transferred{%s}" % labels] == 3
    assert samples["ethoscope_backup_device_bytes_transferred{%s}" % labels] == 100000 + 2 * (64 << 20)
    assert samples["ethoscope_backup_run_duration_seconds"] == 41.0


def test_metrics_last_backup_is_exact():
    status, history = build(scripted_pass(2, failing=0))
    samples, _, _ = parse_metrics(render.render_metrics(status, history, NOW, DAY, horizon_days=14.0))
    assert samples["ethoscope_backup_last_backup_timestamp_seconds"] == history["last_backup"]


def test_metrics_label_escaping_and_running():
    hostile = Pass(((A, 'ETHOSCOPE_<b>9"\\x</b>', "169.254.77.13"),), (ev.Started(A, 1, NOW - 10),),
                   started=NOW - 10)
    text = render.render_metrics(*build(hostile, finish=False), NOW, DAY, horizon_days=14.0)
    assert 'device_name="ETHOSCOPE_<b>9\\"\\\\x</b>"' in text
    assert parse_metrics(text)[0]["ethoscope_backup_run_active"] == 1


def test_metrics_empty():
    metrics = parse_metrics(render.render_metrics(None, None, NOW, DAY, horizon_days=14.0))
    assert metrics[0]["ethoscope_backup_stale_devices"] == 0


def test_next_change_is_the_next_stale_flip(done):
    assert render.next_change(*done, NOW, DAY) == NOW - 3600 - 570 + DAY


def test_device_warnings_are_in_its_entry():
    """What a device was warned about in this pass (said once) is in its /status entry."""
    example = example_pass()
    said = ev.Warned(A, f"not copied: results/{B} on the device (only its own folder results/{A}/ is backed up)")
    status, history = build(Pass(example.devices, example.events[:1] + (said, said) + example.events[1:],
                                 started=example.started))
    doc = render.status_document(status, history, NOW, DAY, horizon_days=14.0)
    assert doc["devices"][A]["warnings"] == [said.message]
    assert doc["devices"][B]["warnings"] == []
    history_only = render.status_document(None, history, NOW, DAY, horizon_days=14.0)
    assert history_only["devices"][A]["warnings"] == []


def test_a_file_copied_too_fast_to_measure_has_no_speed():
    """rsync's per-file times are kept to the millisecond: a small file received in a burst took
    "0 s", whose speed would read as gigabytes a second."""
    from ethoscope_rsync.state.model import FileCopy
    burst = render._file_record("a/b.txt", 4096, FileCopy("a/b.txt", 4096, 4096, 100.0, 100.0))
    measured = render._file_record("a/c.h264", 1 << 20, FileCopy("a/c.h264", 1 << 20, 1 << 20, 100.0, 100.5))
    assert burst["transfer_speed"] == "" and burst["transfer_end"] == 100.0
    assert measured["transfer_speed"] == "2.00MB/s"
