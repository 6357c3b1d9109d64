"""Commands that do not say "fine" when it is not: an unknown command is refused as one, -i "" means
no node server and no mDNS, and discovery's failure names the real cause."""
import socket

import pytest

from ethoscope_rsync.backup import discovery
from ethoscope_rsync.commands.cli import main, unknown_command
from ethoscope_rsync.config.load import load_config


def test_an_unknown_command_is_refused_as_a_command(capsys):
    assert unknown_command(["stat"]).startswith("unknown command 'stat' (did you mean 'status'?)")
    assert "(a device? ethoscope-backup run -e 004)" in unknown_command(["004"])
    assert unknown_command(["-e", "004"]) == unknown_command(["status"]) == unknown_command([]) == ""
    with pytest.raises(SystemExit) as exited:
        main(["stat"])
    assert exited.value.code == 2 and "unknown command 'stat'" in capsys.readouterr().err


def config(tmp_path, node):
    path = tmp_path / "backup.conf"
    path.write_text(f"[node]\n{node}\n[paths]\nupstream_config = {tmp_path}/none\n")
    return load_config(path)


def test_no_node_server_means_no_mdns_either(tmp_path, monkeypatch):
    monkeypatch.setattr(discovery, "browse_mdns", lambda timeout: pytest.fail("mDNS browsed"))
    with pytest.raises(discovery.DiscoveryError, match=r'\[node\] server is empty, or -i ""'):
        discovery.discover(config(tmp_path, "server ="))


def test_mdns_off_is_said_as_the_cause(tmp_path):
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    with pytest.raises(discovery.DiscoveryError) as error:
        discovery.discover(config(tmp_path, f"server = 127.0.0.1:{port}\nmdns_timeout = 0"))
    assert "the mDNS fallback is off ([node] mdns_timeout = 0)" in str(error.value)
    assert "no device found by mDNS" not in str(error.value)
