"""Device records: validation of names, ids and addresses; the -e selection."""
import pytest

from ethoscope_rsync.config.devices import Device, DeviceError, node_device, parse_selection, selected

GOOD = {"id": "0123456789abcdef0123456789abcdef", "name": "ETHOSCOPE_004", "ip": "169.254.3.4"}


def test_node_device_valid():
    device = node_device(GOOD)
    assert (device.name, device.address, device.key, device.number) == (
        "ETHOSCOPE_004", "169.254.3.4", GOOD["id"], 4)
    assert device.host_key_alias == "ETHOSCOPE_004"


@pytest.mark.parametrize("field, value", [
    ("name", "../../x"), ("name", "ETHOSCOPE_001; rm -rf /"), ("name", "$(reboot)"), ("name", None),
    ("id", "xyz"), ("id", "0123456789ABCDEF0123456789ABCDEF0"), ("ip", "not-an-ip"),
    ("ip", "-oProxyCommand=x"), ("ip", "0.0.0.0"), ("ip", "224.0.0.1"), ("ip", 12),
    ("ip", "fe80::1%eth0\x00"), ("ip", "fe80::1%a b"), ("ip", "fe80::1%" + "x" * 16),
])
def test_hostile_fields_rejected(field, value):
    with pytest.raises(DeviceError):
        node_device(dict(GOOD, **{field: value}))


def test_ipv6_address_bracketed_for_rsync():
    device = node_device(dict(GOOD, ip="fe80::1"))
    assert device.ssh_host == "[fe80::1]"


def test_selection_forms():
    assert parse_selection("004") == (4,)
    assert parse_selection("4,ETHOSCOPE_007, 010") == (4, 7, 10)
    assert parse_selection("0123456789ABCDEF0123456789abcdef") == ("0123456789abcdef0123456789abcdef",)
    for bad in ("", "x", "ETHOSCOPE_", "../4"):
        with pytest.raises(DeviceError):
            parse_selection(bad)


def test_selected_matches_number_or_id():
    device = Device(name="ETHOSCOPE_004", address="169.254.1.4", id=GOOD["id"])
    assert selected(device, ()) and selected(device, (4,)) and selected(device, (GOOD["id"],))
    assert not selected(device, (7,))


def test_each_device_number_has_one_name():
    """ETHOSCOPE_042 and ETHOSCOPE_0042 would be one number under two names: /status/042, -e 042
    and forget-host could not tell them apart. The second form is refused wherever a name comes in."""
    from ethoscope_rsync.config.devices import DeviceError, check_name, parse_selection
    assert check_name("ETHOSCOPE_042") == "ETHOSCOPE_042" and check_name("ETHOSCOPE_1042") == "ETHOSCOPE_1042"
    for name in ("ETHOSCOPE_0042", "ETHOSCOPE_0000", "ETHOSCOPE_12345", "ETHOSCOPE_42"):
        with pytest.raises(DeviceError):
            check_name(name)
    with pytest.raises(DeviceError):
        parse_selection("ETHOSCOPE_0042")
    assert parse_selection("042,ETHOSCOPE_042,ETHOSCOPE_1042") == (42, 42, 1042)
