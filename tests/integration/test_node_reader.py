"""The upstream node's web UI and API read our :8093/status: a real pass on the lab, served by the
real status service, read the way the node's reader does (the keys it looks up and the types it
expects, written here from its behaviour — not its code):

- each database by file name in ``devices[<id>].synced.results.detailed_files``, reading
  ``size_bytes`` (a number) and ``size_human`` (a string);
- each ``.h264`` by file name in ``devices[<id>].synced.videos.detailed_files``, else in
  ``transfer_details.videos.files``, reading ``size_bytes``, ``size_human``, ``path``, ``status``,
  ``transfer_speed``; when neither names a chunk and ``synced.videos.local_files`` > 0, it lists the
  ``.h264`` files under ``synced.videos.directory``/<id>/ on the node's own disk;
- ``devices[*].processing`` and ``name``, and the top-level ``current_device`` / ``processing_devices``.
"""
import json
import os
import socket
import urllib.request
from pathlib import Path

from tests.integration.safety_checks import Backup, stop_process, wait_for


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def read_like_the_node(port):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/status", timeout=5) as answer:
        return json.loads(answer.read().decode())


def videos_the_node_shows(entry, device_id) -> dict:
    """The chunks the node's device page lists, as its reader finds them (name -> record)."""
    videos = entry.get("synced", {}).get("videos", {})
    named = videos.get("detailed_files") or entry.get("transfer_details", {}).get("videos", {}).get("files", {})
    shown = {name: record for name, record in named.items() if name.endswith(".h264")}
    if not shown and videos.get("local_files", 0) > 0:         # its own listing of the node's disk
        root = Path(videos.get("directory", "/ethoscope_data/videos"))
        for chunk in (root / device_id).rglob("*.h264"):
            shown[chunk.name] = {"size_bytes": chunk.stat().st_size, "size_human": "?", "status": "backed-up",
                                 "path": os.path.relpath(chunk, root), "transfer_speed": ""}
    return shown


def check_device(doc, device, backup):
    entry = doc["devices"].get(device.id, {})
    assert entry, f"no device data for {device.id} in the rsync service"
    assert isinstance(entry["processing"], bool) and entry["name"] == device.name
    synced = entry.get("synced", {})
    results = synced.get("results", {}).get("detailed_files", {})
    dbs = list((device.data_root / "results").rglob("*.db"))
    for db in dbs:
        record = results.get(db.name)
        assert record, f"{db.name} is not under synced.results.detailed_files: the node shows it not backed up"
        copy = backup.results / db.relative_to(device.data_root / "results")
        assert record["size_bytes"] == copy.stat().st_size and isinstance(record["size_bytes"], int)
        assert isinstance(record["size_human"], str) and record["size_human"]
    listed = videos_the_node_shows(entry, device.id)
    chunks = [p for p in (device.data_root / "videos").rglob("*.h264")]
    assert chunks
    for chunk in chunks:
        record = listed.get(chunk.name)
        assert record, f"{chunk.name} is missing from the videos the node reads"
        assert record["size_bytes"] == chunk.stat().st_size
        assert all(isinstance(record[k], str) for k in ("size_human", "path", "status", "transfer_speed"))
        assert record["path"].endswith("/" + chunk.name)
    assert len(listed) == len(chunks)
    files = [p for p in (device.data_root / "videos").rglob("*") if p.is_file()]
    videos = synced["videos"]
    assert videos["local_files"] == len(files) and videos["directory"] == str(backup.videos)
    return len(dbs), len(chunks)


def test_the_node_reads_every_database_and_chunk(lab, tmp_path):
    backup = Backup(lab, tmp_path)
    port = free_port()
    assert backup.run().returncode == 0
    server = backup.popen("--listen", f"127.0.0.1:{port}", command="serve")
    try:
        doc = wait_for(lambda: _try(read_like_the_node, port), 30, what="the status service")
        assert doc["current_device"] is None and doc["processing_devices"] == []
        for device in lab.devices:
            check_device(doc, device, backup)
        # a pass that copies nothing still shows everything the node has
        assert backup.run().returncode == 0
        doc = read_like_the_node(port)
        for device in lab.devices:
            check_device(doc, device, backup)
            assert doc["devices"][device.id]["transfer_details"]["videos"]["files"] == {}
    finally:
        stop_process(server)


def test_the_node_sees_a_week_of_chunks_and_fifty_databases(make_lab, tmp_path):
    """2,000 video chunks and 50 databases on one device, and one more chunk copied by the last pass
    (which a list of this pass's files would have shown alone): the node's reader sees them all."""
    lab = make_lab(n_devices=1)
    device = lab.devices[0]
    lab.populate(device, experiments=50, db_rows=20, video_chunks=40, chunk_bytes=1024, mp4=False)
    backup = Backup(lab, tmp_path)
    port = free_port()
    assert backup.run(timeout=600).returncode == 0
    lab.add_video_chunk(device, 2048)
    assert backup.run(timeout=600).returncode == 0
    server = backup.popen("--listen", f"127.0.0.1:{port}", command="serve")
    try:
        doc = wait_for(lambda: _try(read_like_the_node, port), 30, what="the status service")
        assert check_device(doc, device, backup) == (50, 2001)
        assert doc["devices"][device.id]["transfer_details"]["videos"]["total_files"] == 1
    finally:
        stop_process(server)


def _try(read, port):
    try:
        return read(port)
    except OSError:
        return None
