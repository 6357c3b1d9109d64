"""``run --dry-run`` (preview): what it prints of a device's answers, with scripted processes
standing in for ssh and rsync (as in the job's tests) and the discovery's answer given."""
import pytest

from ethoscope_rsync.backup import preview
from ethoscope_rsync.config.devices import Device
from ethoscope_rsync.backup.discovery import Discovered
from ethoscope_rsync.system.execute import Result
from ethoscope_rsync.backup.probe import MARK
from ethoscope_rsync.backup.rsync import FILE_MARK

MID = "0123456789abcdef0123456789abcdef"
DEVICE = Device(name="ETHOSCOPE_004", address="169.254.9.4", id="")


def probe_answer(machine_id=MID):
    return (f"{MARK}machine-id\n{machine_id}\n{MARK}cpu\n{MARK}results\n{MID}\n{MARK}videos\n{MID}\n"
            f"{MARK}databases\n\n{MARK}end\n")


def preview_of(config, monkeypatch, probe, rsync, device=DEVICE):
    """What preview_pass prints when the probe answers `probe` and each rsync answers
    rsync(kind) -> (exit code, stdout, stderr); and its exit code."""
    def run(argv, timeout):
        if argv[0] == "ssh":
            return Result(tuple(argv), 0, probe, "")
        kind = "videos" if "/videos/" in argv[-2] else "results"
        return Result(tuple(argv), *rsync(kind))
    monkeypatch.setattr(preview, "discover", lambda config, pinned=None: Discovered((device,), (), "config"))
    monkeypatch.setattr(preview.execute, "run", run)
    lines = []
    code = preview.preview_pass(config, out=lines.append)
    return code, lines


def test_names_from_a_device_cannot_drive_the_terminal(config, monkeypatch):
    """rsync escapes a name's unprintable bytes as \\#ooo and parse_file_line undoes it: what
    preview prints of a device's names and error messages is escaped again."""
    def rsync(kind):
        if kind == "videos":
            return 23, "", "the device says \x1b[2J\x1b]0;owned\x07\n"
        return 0, f"{FILE_MARK} >f+++++++++ 5 5 ts/evil\\#033[2J\\#012I hid.db\n", ""
    code, lines = preview_of(config, monkeypatch, probe_answer(), rsync)
    assert code == 1
    assert not any(char in line for line in lines for char in "\x1b\n\x07")
    assert f"  {MID}/ts/evil\\x1b[2J\\x0aI hid.db (5 B)" in lines
    assert any(line.startswith("ETHOSCOPE_004 videos: cannot list") and "\\x1b[2J\\x1b]0;owned\\x07" in line
               for line in lines)


@pytest.mark.parametrize("machine_id", ["", "not-a-machine-id", "\x1b[2J"])
def test_a_device_without_a_machine_id_is_named_with_the_reason(config, monkeypatch, machine_id):
    code, lines = preview_of(config, monkeypatch, probe_answer(machine_id), lambda kind: (0, "", ""))
    assert code == 1
    assert lines == ["1 device(s) from config",
                     "ETHOSCOPE_004: no valid /etc/machine-id on the device: its own folder is unknown, "
                     "nothing to preview"]


def test_a_device_telling_another_machine_id_than_claimed_is_not_previewed(config, monkeypatch):
    claimed = Device(name="ETHOSCOPE_004", address="169.254.9.4", id="f" * 32)
    code, lines = preview_of(config, monkeypatch, probe_answer(), lambda kind: (0, "", ""), device=claimed)
    assert code == 1
    assert lines[1:] == [f"ETHOSCOPE_004: the device says its machine id is {MID}, not {'f' * 32}: a pass would "
                         "not back it up, nothing to preview"]
    code, lines = preview_of(config, monkeypatch, probe_answer(), lambda kind: (0, "", ""),
                             device=Device(name="ETHOSCOPE_004", address="169.254.9.4", id=MID))
    assert code == 0 and lines[1:] == [f"ETHOSCOPE_004 results: 0 file(s), 0 B would be copied to "
                                       f"{config.destination('results') / MID}",
                                       f"ETHOSCOPE_004 videos: 0 file(s), 0 B would be copied to "
                                       f"{config.destination('videos') / MID}"]


def test_the_dry_run_refuses_what_a_pass_refuses(config, monkeypatch):
    """A device claiming a name pinned to another machine id is refused by the dry run with the pass's
    own words (backup.pins.admitted), and never asked anything."""
    from ethoscope_rsync.state.history import DeviceHistory, History
    from ethoscope_rsync.state.store import save_history
    other = "f" * 32
    config.history_file.parent.mkdir()
    save_history(config.history_file, History(devices={other: DeviceHistory(id=other, name=DEVICE.name,
                                                                            pinned=True)}))
    impostor = Device(name=DEVICE.name, address="169.254.9.9", id=MID)
    asked = []
    code, lines = preview_of(config, monkeypatch, probe_answer(), lambda kind: asked.append(kind) or (0, "", ""),
                             device=impostor)
    assert code == 1 and asked == []
    assert any(line.startswith(f"refused, as a pass would: {DEVICE.name} at 169.254.9.9 claims machine id {MID}")
               for line in lines), lines
