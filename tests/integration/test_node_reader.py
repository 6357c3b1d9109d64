"""The upstream node's web UI and API read our :8093/status: a real pass on the lab, served by the
real status service, read the way the node's reader does (the keys it looks up and the types it
expects, written here from its behaviour — not its code):

- each database by file name in ``devices[<id>].synced.results.detailed_files``, reading
  ``size_bytes`` (a number) and ``size_human`` (a string);
- each ``.h264`` by file name in ``devices[<id>].synced.videos.detailed_files``, else in
  ``transfer_details.videos.files``, reading ``size_bytes``, ``size_human``, ``path``, ``status``,
  ``transfer_speed``; ``synced.videos.local_files`` and ``directory`` for its own listing;
- ``devices[*].processing`` and ``name``, and the top-level ``current_device`` / ``processing_devices``.
"""
import json
import socket
import urllib.request

from tests.integration.safety_helpers import Backup, stop_process, wait_for


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def read_like_the_node(port):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/status", timeout=5) as answer:
        return json.loads(answer.read().decode())


def check_device(doc, device, backup):
    entry = doc["devices"].get(device.id, {})
    assert entry, f"no device data for {device.id} in the rsync service"
    assert isinstance(entry["processing"], bool) and entry["name"] == device.name
    synced = entry.get("synced", {})
    results = synced.get("results", {}).get("detailed_files", {})
    for db in (device.data_root / "results").rglob("*.db"):
        record = results.get(db.name)
        assert record, f"{db.name} is not under synced.results.detailed_files: the node shows it not backed up"
        copy = backup.results / db.relative_to(device.data_root / "results")
        assert record["size_bytes"] == copy.stat().st_size and isinstance(record["size_bytes"], int)
        assert isinstance(record["size_human"], str) and record["size_human"]
    videos = synced.get("videos", {})
    listed = videos.get("detailed_files") or entry.get("transfer_details", {}).get("videos", {}).get("files", {})
    chunks = [p for p in (device.data_root / "videos").rglob("*.h264")]
    assert chunks
    for chunk in chunks:
        record = listed.get(chunk.name)
        assert record, f"{chunk.name} is missing from the videos the node reads"
        assert record["size_bytes"] == chunk.stat().st_size
        assert all(isinstance(record[k], str) for k in ("size_human", "path", "status", "transfer_speed"))
        assert record["path"].endswith("/" + chunk.name)
    files = [p for p in (device.data_root / "videos").rglob("*") if p.is_file()]
    assert videos["local_files"] == len(files) and videos["directory"] == str(backup.videos)


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


def _try(read, port):
    try:
        return read(port)
    except OSError:
        return None
