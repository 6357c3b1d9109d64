"""Parsing the node server's /devices answer, without a network."""
import json

import pytest

from ethoscope_rsync.discovery import DiscoveryError, merge, node_url, parse_node_devices
from ethoscope_rsync.devices import Device


def entry(n, **fields):
    machine_id = f"{n:032x}"
    value = {"id": machine_id, "name": f"ETHOSCOPE_{n:03d}", "ip": f"169.254.9.{n}", "status": "running",
             "databases": {"SQLite": {}, "MariaDB": {}}}
    value.update(fields)
    return machine_id, value


def answer(*entries):
    return json.dumps(dict(entries))


def test_filter_rules():
    devices, warnings = parse_node_devices(answer(
        entry(1), entry(2, status="offline"), entry(3, status="not_in_use"), entry(4, name="ETHOSCOPE_000"),
        entry(5, ip=""), entry(6, status="stopped"), entry(7, status="busy")))
    assert [d.name for d in devices] == ["ETHOSCOPE_001", "ETHOSCOPE_006", "ETHOSCOPE_007"]
    assert warnings == ()


def test_invalid_entries_skipped_with_warnings():
    devices, warnings = parse_node_devices(answer(
        entry(1), entry(2, name="../../x"), entry(3, ip="-oProxyCommand=x"), entry(4, id="nothex"),
        ("dup", entry(1)[1]), ("x", "not an object")))
    assert [d.name for d in devices] == ["ETHOSCOPE_001"]
    assert len(warnings) == 5
    assert any("duplicate machine id" in w for w in warnings)


@pytest.mark.parametrize("body", ["<html>nope</html>", '{"a": ', "[1, 2]", "\x00\xff"])
def test_unusable_answers(body):
    with pytest.raises(DiscoveryError):
        parse_node_devices(body)


def test_empty_answer_is_no_devices():
    assert parse_node_devices("{}") == ((), ())


@pytest.mark.parametrize("server, url", [
    ("localhost", "http://localhost/devices"), ("169.254.1.1:8080", "http://169.254.1.1:8080/devices"),
    ("[fe80::1]:80", "http://[fe80::1]:80/devices")])
def test_node_url(server, url):
    assert node_url(server) == url


@pytest.mark.parametrize("server", ["a/b", "x:99999", "host:port", "a b", "http://x"])
def test_node_url_rejects(server):
    with pytest.raises(DiscoveryError):
        node_url(server)


def test_merge_prefers_first_source():
    static = Device(name="ETHOSCOPE_001", address="169.254.1.9", source="config")
    found = (Device(name="ETHOSCOPE_001", address="169.254.1.1", id="a" * 32),
             Device(name="ETHOSCOPE_002", address="169.254.1.2", id="b" * 32))
    assert [(d.name, d.address) for d in merge((static,), found)] == [
        ("ETHOSCOPE_001", "169.254.1.9"), ("ETHOSCOPE_002", "169.254.1.2")]


def test_mdns_service_to_device():
    from ethoscope_rsync.discovery import mdns_device
    device = mdns_device("ETHOSCOPE_007-x._ethoscope._tcp.local.", ["169.254.3.7"],
                         {b"MACHINE_ID": b"7" * 32, b"MACHINE_NAME": b"ETHOSCOPE_007"})
    assert (device.name, device.address, device.id, device.source) == ("ETHOSCOPE_007", "169.254.3.7", "7" * 32, "mdns")
    bare = mdns_device("ETHOSCOPE_008._ethoscope._tcp.local.", ["not-an-ip", "169.254.3.8"], {})
    assert bare.address == "169.254.3.8" and bare.id == ""
    with pytest.raises(Exception):
        mdns_device("printer._ipp._tcp.local.", ["169.254.3.9"], {})
