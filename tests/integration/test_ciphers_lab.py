"""The ssh cipher per device, on real sshd: the first pass leaves the choice to ssh and learns each
device's CPU; from the second pass on, a device with AES instructions gets AES-GCM and one without
them chacha20-poly1305 — as the devices' own sshd logs (at DEBUG1) say they agreed."""
import re

from ethoscope_rsync.backup.passes import node_has_aes
from tests.integration.runner_helpers import Node

CIPHER_RE = re.compile(r"kex: client->server cipher: (\S+)")


def agreed(device) -> list:
    """The ciphers the device's sshd agreed on, one per connection, oldest first."""
    return CIPHER_RE.findall(device.sshd_log.read_text(errors="replace"))


def test_each_device_gets_the_cipher_its_cpu_and_the_node_s_suit(make_lab, tmp_path):
    lab = make_lab(n_devices=2, populate=True, without_aes={2}, sshd_log_level="DEBUG1")
    with_aes, without = lab.devices
    node = Node(lab, tmp_path)
    result = node.run()
    assert result.returncode == 0, result.stderr
    status = node.status()["devices"]
    for device in lab.devices:                       # first contact: ssh's own choice, chacha20 first
        assert status[device.id]["cipher"] == "ssh default"
        assert agreed(device) == ["chacha20-poly1305@openssh.com"]          # one shared connection a pass
    aes = "aes128-gcm@openssh.com" if node_has_aes() else "chacha20-poly1305@openssh.com"

    result = node.run()
    assert result.returncode == 0, result.stderr
    status = node.status()["devices"]
    assert status[with_aes.id]["cipher"] == aes
    assert status[without.id]["cipher"] == "chacha20-poly1305@openssh.com"
    assert status[without.id]["cipher_reason"] == "no AES instructions on the device"
    assert agreed(with_aes) == ["chacha20-poly1305@openssh.com", aes]
    assert agreed(without) == ["chacha20-poly1305@openssh.com"] * 2
    table = node.run(command="status").stdout
    assert re.search(rf"{with_aes.name} .*  {aes.removesuffix('@openssh.com')}  ", table), table
    assert re.search(rf"{without.name} .*  chacha20-poly1305  ", table), table
