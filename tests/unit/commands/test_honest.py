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


def test_forget_host_during_a_pass_exits_75_or_waits_for_it(tmp_path):
    import threading
    from ethoscope_rsync.commands.check import forget_host
    from ethoscope_rsync.state.store import pass_lock
    state = tmp_path / "state"
    state.mkdir()
    (state / "known_hosts").write_text("ethoscope_004 ssh-ed25519 AAAA\nethoscope_005 ssh-ed25519 BBBB\n")
    path = tmp_path / "backup.conf"
    path.write_text(f"[paths]\nstate_dir = {state}\nupstream_config = {tmp_path}/none\n"
                    f"[ssh]\nknown_hosts = {state}/known_hosts\n")
    conf = load_config(path)
    said, waiting, result = [], threading.Event(), []

    def out(line):
        said.append(line)
        if "waiting for the running pass" in line:
            waiting.set()
    with pass_lock(conf.lock_file):                          # a pass holds the lock
        assert forget_host(conf, "004", out=out) == 75 and "add --wait" in said[-1]
        waiter = threading.Thread(target=lambda: result.append(forget_host(conf, "004", out=out, wait=True)))
        waiter.start()
        assert waiting.wait(30) and result == []              # it waits while the pass runs
    waiter.join(30)
    assert result == [0] and said[-1].startswith("forgot 1 host key(s) of ETHOSCOPE_004")
    assert (state / "known_hosts").read_text() == "ethoscope_005 ssh-ed25519 BBBB\n"


def test_a_pass_before_the_key_exists_waits_and_says_so(tmp_path, monkeypatch):
    import json
    from ethoscope_rsync.backup import keywait
    from ethoscope_rsync.render import verdict
    monkeypatch.delenv("CREDENTIALS_DIRECTORY", raising=False)
    path = tmp_path / "backup.conf"
    path.write_text(f"[paths]\nstatus_file = {tmp_path}/status.json\nstate_dir = {tmp_path}\n"
                    f"upstream_config = {tmp_path}/none\n[ssh]\nkey = {tmp_path}/id_rsa\n")
    conf = load_config(path)
    assert keywait.missing_key(conf) == tmp_path / "id_rsa"
    assert keywait.record_waiting(conf, tmp_path / "id_rsa") == 0
    status = json.loads((tmp_path / "status.json").read_text())
    assert status["run"]["outcome"] == "waiting for the SSH key"
    judged = verdict.judged(status, None, status["run"]["ended"] + 60, 86400.0, 1800.0)
    assert judged.level == "problem" and verdict.line(judged, status["run"]["ended"] + 60).startswith(
        "no devices \u2014 waiting for the SSH key %s" % (tmp_path / "id_rsa"))
    credentials = tmp_path / "credentials"                       # systemd's blank SetCredential= default
    credentials.mkdir()
    (credentials / "ssh-key").write_text("\n")
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(credentials))
    assert keywait.missing_key(conf) == tmp_path / "id_rsa"
    (tmp_path / "id_rsa").write_text("KEY\n")
    assert keywait.missing_key(conf) is None
