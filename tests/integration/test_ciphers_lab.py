"""The ssh cipher per device, on real sshd: at a device's first contact its probe connects on its own
with ssh's default and learns its CPU, and the copies of that same pass use the cipher chosen from
it (the results' sessions over one shared connection, the videos on their own); from the second
pass on the probe opens the shared connection itself. A
device with AES instructions gets AES-GCM and one without them chacha20-poly1305 — as the devices'
own sshd logs (at DEBUG1) say they agreed."""
import re

from ethoscope_rsync.backup.passes import node_has_aes
from tests.integration.backup_node import Node, tree_digest

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
    aes = "aes128-gcm@openssh.com" if node_has_aes() else "chacha20-poly1305@openssh.com"
    for again in (True, False):
        status = node.status()["devices"]
        assert status[with_aes.id]["cipher"] == aes
        assert status[without.id]["cipher"] == "chacha20-poly1305@openssh.com"
        assert status[without.id]["cipher_reason"] == "no AES instructions on the device"
        if again:
            result = node.run()
            assert result.returncode == 0, result.stderr
    # the first pass: the probe alone (ssh's default: chacha20 first), then the results' shared connection
    # and the videos' own with the chosen cipher; the second pass: the probe opens the shared connection
    first, second = ["chacha20-poly1305@openssh.com", aes, aes], [aes, aes]
    assert agreed(with_aes) == first + second
    assert agreed(without) == ["chacha20-poly1305@openssh.com"] * 5
    for device in lab.devices:                              # and the copies went through them
        assert tree_digest(node.videos / device.id) == tree_digest(device.data_root / "videos" / device.id)
    table = node.run(command="status").stdout
    assert re.search(rf"{with_aes.name} .*  {aes.removesuffix('@openssh.com')}  ", table), table
    assert re.search(rf"{without.name} .*  chacha20-poly1305  ", table), table
