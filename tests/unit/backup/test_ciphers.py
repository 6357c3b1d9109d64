"""The ssh cipher chosen per device: from the node's CPU and the device's (learnt at an earlier
contact), offered on every ssh the device's job starts, and shown in its status."""
import shlex

from ethoscope_rsync.state import events as ev
from ethoscope_rsync.config.devices import Device
from ethoscope_rsync.state.history import DeviceHistory, History
from ethoscope_rsync.render.upstream import status_document
from ethoscope_rsync.backup.rsync import AES_FIRST, CHACHA_FIRST
from ethoscope_rsync.backup.passes import choose_all_ciphers, node_has_aes
from ethoscope_rsync.state.store import StatusStore
from tests.unit.backup.job_fakes import LIVE, FakeProcesses, Step, file_line, probe_answer, raw_copy, run_job

A, B, C = "a" * 32, "b" * 32, "c" * 32
DEVICES = (Device("ETHOSCOPE_001", "169.254.9.1", A), Device("ETHOSCOPE_002", "169.254.9.2", B),
           Device("ETHOSCOPE_003", "169.254.9.3", C))


def store(tmp_path, history):
    return StatusStore(tmp_path / "status.json", history, pid=1, what="unified", interval=1.0, clock=lambda: 10.0)


def test_each_device_is_offered_ciphers_from_both_cpus(tmp_path, config):
    history = History(devices={A: DeviceHistory(id=A, name="ETHOSCOPE_001", aes=True),
                               B: DeviceHistory(id=B, name="ETHOSCOPE_002", aes=False)})   # C: never contacted
    s = store(tmp_path, history)
    assert choose_all_ciphers(config, DEVICES, s, node_aes=True) == {
        "ETHOSCOPE_001": AES_FIRST, "ETHOSCOPE_002": CHACHA_FIRST, "ETHOSCOPE_003": ""}
    runs = s.status.devices
    assert [runs[k].cipher_reason for k in (A, B, C)] == [
        "AES instructions on the node and the device", "no AES instructions on the device",
        "chosen from the device's CPU once its probe answers (first contact)"]
    s.write()
    doc = status_document(s.status.to_json(), history.to_json(), 10.0, 86400.0, horizon_days=14.0)
    assert [doc["devices"][k]["cipher"] for k in (A, B, C)] == [
        "aes128-gcm@openssh.com", "chacha20-poly1305@openssh.com", "ssh default"]
    assert doc["devices"][B]["cipher_reason"] == "no AES instructions on the device"
    s = store(tmp_path, history)
    assert set(choose_all_ciphers(config, DEVICES, s, node_aes=False).values()) == {CHACHA_FIRST, ""}


def test_what_the_device_said_is_kept_for_its_next_pass(tmp_path, config):
    s = store(tmp_path, History())
    choose_all_ciphers(config, DEVICES[:1], s, node_aes=True)
    s.apply(ev.Started(A, 1, 1.0))
    s.apply(ev.Contacted(A, A, False))
    assert choose_all_ciphers(config, DEVICES[:1], store(tmp_path, s.history), node_aes=True) == {
        "ETHOSCOPE_001": CHACHA_FIRST}


def test_the_node_s_own_cpu(tmp_path):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nflags\t\t: fpu sse2 aes avx\n")
    assert node_has_aes(cpuinfo) is True
    cpuinfo.write_text("processor\t: 0\nFeatures\t: fp asimd crc32\n")
    assert node_has_aes(cpuinfo) is False
    assert node_has_aes(tmp_path / "missing") is None


def _ssh_of(argv) -> list:
    """The ssh argv of a probe, holder or rsync argv."""
    if argv[0] == "rsync":
        return shlex.split(argv[argv.index("-e") + 1])
    return list(argv)


def test_every_ssh_of_the_job_offers_the_device_s_ciphers(config):
    fake = FakeProcesses({"results:skip": [Step((file_line(".f", 10, "x/notes.txt"),))],
                          "results:raw": [Step(effect=raw_copy(config, 3))]},
                         probe=[Step((probe_answer(LIVE),))])
    result, _, _ = run_job(config, fake, ciphers={"ETHOSCOPE_004": AES_FIRST, "ETHOSCOPE_009": CHACHA_FIRST})
    assert result.ok and fake.calls.count("holder") == 1 and len(fake.argvs) == 6
    for argv in fake.argvs:          # probe, results tree, holder, raw copy, videos, -O exit
        ssh = _ssh_of(argv)
        assert ssh[0] == "ssh" and ssh[ssh.index("-c") + 1] == AES_FIRST, argv


def _shared(ssh) -> bool:
    return any(option.startswith("ControlPath=") for option in ssh)


def test_a_first_contact_copies_with_the_ciphers_its_probe_chose(config):
    """The probe connects on its own with ssh's default; every later ssh of the same pass offers the
    ciphers the device's CPU and the node's suit: the results' sessions share one connection (the
    first opens it), the videos connect on their own."""
    for node_aes, cpu, chosen in ((True, "flags : fpu aes\n", AES_FIRST), (True, "Features : fp asimd\n", CHACHA_FIRST),
                                  (None, "flags : fpu aes\n", CHACHA_FIRST), (False, "flags : aes\n", CHACHA_FIRST)):
        fake = FakeProcesses({"results:skip": [Step((file_line(".f", 10, "x/notes.txt"),))],
                              "results:raw": [Step(effect=raw_copy(config, 3))]},
                             probe=[Step((probe_answer(LIVE, cpu=cpu),))])
        ciphers = {"ETHOSCOPE_004": ""}
        result, sent, _ = run_job(config, fake, ciphers=ciphers, node_aes=node_aes)
        assert result.ok and ciphers == {"ETHOSCOPE_004": chosen}
        assert fake.calls[0] == "probe" and len(fake.argvs) == 6    # probe, tree, holder, raw copy, videos, -O exit
        probe, *others = [_ssh_of(argv) for argv in fake.argvs]
        assert "-c" not in probe and not _shared(probe)                       # ssh's default, on its own
        for call, ssh in zip(fake.calls[1:], others):
            assert ssh[ssh.index("-c") + 1] == chosen and _shared(ssh) == (call != "videos"), (call, ssh)
        contacted = [e for e in sent if isinstance(e, ev.Contacted)]
        assert [(e.ciphers, e.aes) for e in contacted] == [(chosen, "aes" in cpu.split(":")[1].split())]


def test_a_device_whose_cpu_does_not_say_keeps_ssh_s_default(config):
    fake = FakeProcesses({}, probe=[Step((probe_answer(cpu=""),))])
    ciphers = {"ETHOSCOPE_004": ""}
    result, sent, _ = run_job(config, fake, ciphers=ciphers, node_aes=True)
    assert result.ok and ciphers == {"ETHOSCOPE_004": ""}
    assert not any("-c" in _ssh_of(argv) for argv in fake.argvs)
    assert [e.cipher_reason for e in sent if isinstance(e, ev.Contacted)] == [
        "ssh's default: the device's CPU does not say whether it has AES instructions"]


def test_a_device_known_before_opens_the_shared_connection_with_its_probe(config):
    fake = FakeProcesses({}, probe=[Step((probe_answer(),))])
    run_job(config, fake, ciphers={"ETHOSCOPE_004": CHACHA_FIRST}, node_aes=True)
    assert _shared(_ssh_of(fake.argvs[0]))
    assert [_shared(_ssh_of(argv)) for call, argv in zip(fake.calls, fake.argvs) if call == "videos"] == [False]


def test_the_status_shows_the_ciphers_chosen_at_the_first_contact(tmp_path, config):
    s = store(tmp_path, History())
    choose_all_ciphers(config, DEVICES[:1], s, node_aes=True)
    s.apply(ev.Started(A, 1, 1.0))
    s.apply(ev.Contacted(A, A, True, AES_FIRST, "AES instructions on the node and the device"))
    assert (s.status.devices[A].ciphers, s.status.devices[A].cipher_reason) == (
        AES_FIRST, "AES instructions on the node and the device")
    s.apply(ev.Contacted(A, A, True))                   # a later attempt: unchanged
    assert s.status.devices[A].ciphers == AES_FIRST
