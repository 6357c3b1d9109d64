"""Identity: claims of names and machine ids checked against the pins; known_hosts kept safely."""
import os

from ethoscope_rsync.config.devices import Device
from ethoscope_rsync.backup.pins import (add_name_aliases, check_claims, pinned_id, pins, remove_host_keys,
                                         unpin)
from ethoscope_rsync.state.history import DeviceHistory, History
from ethoscope_rsync.backup.pins import known_identity

A, B, C = "a" * 32, "b" * 32, "c" * 32
KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIEx0"


def history():
    return History(devices={A: DeviceHistory(id=A, name="ETHOSCOPE_004", pinned=True),
                            B: DeviceHistory(id=B, name="ETHOSCOPE_005", pinned=False)})


def test_agreeing_claims_pass():
    devices = (Device("ETHOSCOPE_004", "169.254.1.4", A), Device("ETHOSCOPE_006", "169.254.1.6", C),
               Device("ETHOSCOPE_005", "169.254.1.5", C))            # 005 never answered: not pinned
    assert check_claims(devices, history()) == (devices, ())


def test_a_pinned_name_with_another_id_is_refused():
    allowed, refused = check_claims((Device("ETHOSCOPE_004", "169.254.9.9", C),), history())
    assert allowed == () and len(refused) == 1
    assert refused[0].startswith(f"ETHOSCOPE_004 at 169.254.9.9 claims machine id {C}, but ETHOSCOPE_004 is {A}")
    assert refused[0].endswith("run: ethoscope-backup forget-host ETHOSCOPE_004")


def test_a_pinned_id_under_another_name_is_refused():
    allowed, refused = check_claims((Device("ETHOSCOPE_099", "169.254.9.9", A),), history())
    assert allowed == () and f"claims the machine id {A} of ETHOSCOPE_004" in refused[0]


def test_unpin_after_an_sd_card_swap():
    h = history()
    assert unpin(h, "ETHOSCOPE_004") == 1
    assert check_claims((Device("ETHOSCOPE_004", "169.254.9.9", C),), h)[1] == ()


def test_first_version_aliases_are_kept_under_the_name(tmp_path):
    path = tmp_path / "known_hosts"
    path.write_text(f"ethoscope_004-{A} {KEY}\nethoscope_005 {KEY}5\nethoscope_005-{B} {KEY}6\n")
    assert add_name_aliases(path) == 1
    assert path.read_text().splitlines()[-1] == f"ethoscope_004 {KEY}"
    assert add_name_aliases(path) == 0                      # idempotent


def test_forgetting_a_host_never_follows_a_planted_link(tmp_path):
    path = tmp_path / "known_hosts"
    target = tmp_path / "precious"
    target.write_text("do not touch\n")
    os.symlink(target, tmp_path / "known_hosts.tmp")       # what the first version wrote through
    path.write_text(f"ethoscope_004 {KEY}\nethoscope_004-{A} {KEY}\nethoscope_0040 {KEY}\n")
    assert remove_host_keys(path, "ETHOSCOPE_004") == 2
    assert path.read_text() == f"ethoscope_0040 {KEY}\n"
    assert target.read_text() == "do not touch\n" and not path.is_symlink()
    assert remove_host_keys(tmp_path / "missing", "ETHOSCOPE_004") == 0


def test_retired_devices_keep_their_pins():
    """A device no longer shown (retired) keeps its name and id pinned: nobody claims them later."""
    h = History(devices={B: DeviceHistory(id=B, name="ETHOSCOPE_005", pinned=True)}, retired={A: "ETHOSCOPE_004"})
    assert pins(h) == {A: "ETHOSCOPE_004", B: "ETHOSCOPE_005"} and pinned_id(h, "ETHOSCOPE_004") == A
    allowed, refused = check_claims((Device("ETHOSCOPE_004", "169.254.9.9", C),
                                     Device("ETHOSCOPE_077", "169.254.9.7", A),
                                     Device("ETHOSCOPE_004", "169.254.1.4", A)), h)
    assert allowed == (Device("ETHOSCOPE_004", "169.254.1.4", A),)
    assert "but ETHOSCOPE_004 is " + A in refused[0] and f"claims the machine id {A} of ETHOSCOPE_004" in refused[1]
    assert unpin(h, "ETHOSCOPE_004") == 1 and h.retired == {}
    assert check_claims((Device("ETHOSCOPE_004", "169.254.9.9", C),), h) == (
        (Device("ETHOSCOPE_004", "169.254.9.9", C),), ())


def test_a_device_from_the_config_gets_its_pinned_id_only():
    h = History(devices={A: DeviceHistory(id=A, name="ETHOSCOPE_004", pinned=True),
                         B: DeviceHistory(id=B, name="ETHOSCOPE_005", pinned=False)},   # after forget-host
                retired={C: "ETHOSCOPE_006"})
    static = [Device(f"ETHOSCOPE_00{n}", "169.254.1.9", source="config") for n in (4, 5, 6, 7)]
    assert [known_identity(d, h).id for d in static] == [A, "", C, ""]
