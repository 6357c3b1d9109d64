"""Parsing the node server's /devices answer, without a network."""
import json
import subprocess
import threading
from pathlib import Path

import pytest

from ethoscope_rsync.backup.discovery import DiscoveryError, merge, parse_node_devices
from ethoscope_rsync.config.devices import Device, DeviceError

ROOT = Path(__file__).resolve().parents[3]


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
        entry(5, ip="fe80::1%eth0\x00x"), ("x", "not an object")))
    assert [d.name for d in devices] == ["ETHOSCOPE_001"]
    assert len(warnings) == 5


def test_the_number_of_devices_is_bounded():
    devices, warnings = parse_node_devices(answer(*(entry(n, ip=f"169.254.{n // 200}.{n % 200 + 1}")
                                                    for n in range(1, 1200))))
    assert len(devices) == 1000 and len(warnings) == 1 and "more than 1000" in warnings[0]


@pytest.mark.parametrize("body", ["<html>nope</html>", '{"a": ', "[1, 2]", "\x00\xff", "[" * 100000])
def test_unusable_answers(body):
    with pytest.raises(DiscoveryError):
        parse_node_devices(body)


def test_empty_answer_is_no_devices():
    assert parse_node_devices("{}") == ((), ())


def test_conflicting_claims_are_all_held_back():
    """Never first-wins: two entries claiming one name, or one machine id, are both left out."""
    static = Device(name="ETHOSCOPE_001", address="169.254.1.9", source="config")
    found = (Device(name="ETHOSCOPE_001", address="169.254.1.1", id="a" * 32),
             Device(name="ETHOSCOPE_002", address="169.254.1.2", id="b" * 32),
             Device(name="ETHOSCOPE_003", address="169.254.1.3", id="c" * 32),
             Device(name="ETHOSCOPE_033", address="169.254.1.33", id="c" * 32))
    devices, warnings, held = merge((static,), found)
    assert [d.name for d in devices] == ["ETHOSCOPE_002"]
    assert [(d.name, d.address) for d in held] == [("ETHOSCOPE_001", "169.254.1.9"), ("ETHOSCOPE_001", "169.254.1.1"),
                                                   ("ETHOSCOPE_003", "169.254.1.3"), ("ETHOSCOPE_033", "169.254.1.33")]
    assert len(warnings) == 2
    assert "ETHOSCOPE_001 at 169.254.1.9 (config), ETHOSCOPE_001 at 169.254.1.1 (node)" in warnings[0]
    assert "ETHOSCOPE_003" in warnings[1] and "ETHOSCOPE_033" in warnings[1]


def test_agreeing_entries_are_one_device():
    static = Device(name="ETHOSCOPE_001", address="169.254.1.1", source="config")
    node = Device(name="ETHOSCOPE_001", address="169.254.1.1", id="a" * 32)
    devices, warnings, held = merge((static,), (node,))
    assert devices == (Device(name="ETHOSCOPE_001", address="169.254.1.1", id="a" * 32, source="config"),)
    assert warnings == () and held == ()


def test_mdns_service_to_device():
    from ethoscope_rsync.backup.discovery import mdns_device
    device = mdns_device("ETHOSCOPE_007-x._ethoscope._tcp.local.", ["169.254.3.7"],
                         {b"MACHINE_ID": b"7" * 32, b"MACHINE_NAME": b"ETHOSCOPE_007"})
    assert (device.name, device.address, device.id, device.source) == ("ETHOSCOPE_007", "169.254.3.7", "7" * 32, "mdns")
    bare = mdns_device("ETHOSCOPE_008._ethoscope._tcp.local.", ["not-an-ip", "169.254.3.8"], {})
    assert bare.address == "169.254.3.8" and bare.id == ""
    for name, props in (("printer._ipp._tcp.local.", {}),
                        ("x._ethoscope._tcp.local.", {b"MACHINE_NAME": b"ETHOSCOPE_12345"}),
                        ("ETHOSCOPE_12345._ethoscope._tcp.local.", {}),
                        ("x._ethoscope._tcp.local.", {b"MACHINE_NAME": b"my ETHOSCOPE_001"})):
        with pytest.raises(DeviceError):
            mdns_device(name, ["169.254.3.9"], props)


def _loaded_by(code: str) -> set:
    done = subprocess.run(["/usr/bin/python3", "-c",
                           code + "\nimport sys, json\nprint(json.dumps(sorted(sys.modules)))"],
                          cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return set(json.loads(done.stdout.splitlines()[-1]))


def test_the_daemon_has_https_for_its_webhooks():
    """The daemon runs the alerts in its own process: its http.client must have HTTPS."""
    _loaded_by("import ethoscope_rsync.commands.daemon, http.client, urllib.request, ssl\n"
               "assert hasattr(http.client, 'HTTPSConnection') and hasattr(urllib.request, 'HTTPSHandler')")


def test_the_mdns_fallback_is_bounded_in_time_and_count(monkeypatch):
    """Thousands of announcers that never answer (a fault a test cannot otherwise stage: the one
    fake here is zeroconf's browser and resolver) cost the fallback its timeout, not a second
    each; at most MAX_DEVICES names are taken, with a warning; a device that answers is found."""
    import sys
    import types
    from ethoscope_rsync.backup.discovery import MAX_DEVICES, browse_mdns
    silent, asked = threading.Event(), []

    class Answer:
        properties = {b"MACHINE_ID": b"1" * 32}

        def parsed_addresses(self):
            return ["169.254.1.1"]

    class Zeroconf:
        def get_service_info(self, type_, name, timeout):
            asked.append(name)
            if name.startswith("ETHOSCOPE_001."):
                return Answer()
            silent.wait(timeout / 1000)        # no answer: zeroconf waits `timeout` ms for one
            return None

        def close(self):
            pass

    def ServiceBrowser(zc, type_, listener):
        for n in range(1, 5001):
            listener.add_service(zc, type_, f"ETHOSCOPE_{n:03d}._ethoscope._tcp.local.")
        listener.add_service(zc, type_, "ETHOSCOPE_001._ethoscope._tcp.local.")     # announced again

    monkeypatch.setitem(sys.modules, "zeroconf", types.SimpleNamespace(Zeroconf=Zeroconf, ServiceBrowser=ServiceBrowser,
                                                                       ServiceListener=object))
    result = []
    browsing = threading.Thread(target=lambda: result.append(browse_mdns(1.5)), daemon=True)
    browsing.start()
    browsing.join(10)
    silent.set()                # (lets a browse that ignored its deadline end)
    assert result, "browse_mdns(1.5) still running after 10 s"
    # the answering name at once, then silent ones of at most a second each until 1.5 s are spent:
    # a count, not a clock reading, so a loaded machine cannot make it fail
    assert asked[0].startswith("ETHOSCOPE_001.") and 2 <= len(asked) <= 4, asked
    devices, warnings = result[0]
    assert [(d.name, d.address, d.id) for d in devices] == [("ETHOSCOPE_001", "169.254.1.1", "1" * 32)]
    assert len(asked) == len(set(asked)) <= MAX_DEVICES
    assert any(f"more than {MAX_DEVICES}" in w for w in warnings)
    assert any("not resolved within 1.5s" in w for w in warnings)


def test_pins_win_over_an_impostor():
    """A device whose key and id are pinned keeps being backed up when another entry claims its
    name or its machine id; the impostor is held back and named."""
    from ethoscope_rsync.backup.pins import identities
    from ethoscope_rsync.state.history import DeviceHistory, History
    real = Device(name="ETHOSCOPE_042", address="169.254.4.42", id="a" * 32)
    pinned = identities(History(devices={"a" * 32: DeviceHistory(id="a" * 32, name="ETHOSCOPE_042",
                                                                 address="169.254.4.42", pinned=True)}))
    for impostor in (Device(name="ETHOSCOPE_042", address="169.254.6.6", id="f" * 32),     # its name
                     Device(name="ETHOSCOPE_099", address="169.254.6.6", id="a" * 32),     # its id
                     Device(name="ETHOSCOPE_042", address="169.254.6.6", id="a" * 32),     # both, elsewhere
                     Device(name="ETHOSCOPE_042", address="169.254.6.6", source="config")):
        devices, warnings, held = merge((impostor,), (real,), pinned=pinned)
        assert devices == (real,) and held == (impostor,), impostor
        assert len(warnings) == 1 and "impostor(s) " + f"{impostor.name} at 169.254.6.6" in warnings[0]
    # unpinned (or the pinned device's last address unknown): which one is real is not for a list to say
    devices, warnings, held = merge((Device(name="ETHOSCOPE_042", address="169.254.6.6", id="f" * 32),), (real,))
    assert devices == () and len(held) == 2
    moved = {"a" * 32: ("ETHOSCOPE_042", "")}
    twin = Device(name="ETHOSCOPE_042", address="169.254.6.6", id="a" * 32)
    assert merge((twin,), (real,), pinned=moved)[0] == ()
