"""Argv builders and output parsers, checked by equality without running anything."""

import pytest

from ethoscope_rsync.config.load import load_config
from ethoscope_rsync.config.devices import Device
from ethoscope_rsync.backup.rsync import (FileEvent, Progress, Stats, classify_exit, informative_line,
                                          make_rsync_command, make_ssh_command, parse_file_line,
                                          parse_progress, parse_stats, unescape_name)
from ethoscope_rsync.system.execute import split_records

DEVICE = Device(name="ETHOSCOPE_004", address="169.254.3.4", id="0123456789abcdef0123456789abcdef")


@pytest.fixture
def config(tmp_path):
    path = tmp_path / "backup.conf"
    path.write_text(f"[paths]\nupstream_config = {tmp_path}/none\nresults = /data/results\n"
                    "[ssh]\nknown_hosts = /var/lib/eb/known_hosts\n")
    return load_config(path)


SSH = ("ssh", "-i", "/k", "-p", "22", "-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes",
       "-o", "StrictHostKeyChecking=accept-new", "-o", "UserKnownHostsFile=/var/lib/eb/known_hosts",
       "-o", "GlobalKnownHostsFile=/dev/null",
       "-o", "HostKeyAlias=ETHOSCOPE_004", "-o", "UpdateHostKeys=no",
       "-o", "HashKnownHosts=no", "-o", "ConnectTimeout=10", "-o", "ServerAliveInterval=5",
       "-o", "ServerAliveCountMax=3", "-o", "LogLevel=ERROR",
       "-o", "KexAlgorithms=^curve25519-sha256,curve25519-sha256@libssh.org", "-l", "ethoscope")


def test_ssh_command(config):
    assert make_ssh_command(config, DEVICE, "/k") == SSH
    assert "StrictHostKeyChecking=no" not in make_ssh_command(config, DEVICE, "/k")


MID = DEVICE.id


def test_video_command_pulls_the_device_s_own_folder(config):
    argv = make_rsync_command(config, DEVICE, "videos", key="/k", folder=MID)
    assert argv[0] == "rsync"
    assert argv[-2:] == (f"ethoscope@169.254.3.4:/ethoscope_data/videos/{MID}/", f"/data/videos/{MID}/")
    assert "--compress" not in argv and not any(a.startswith("--delete") for a in argv)
    assert "--partial-dir=.ethoscope-backup-partial" in argv and "--timeout=60" in argv
    assert "--no-links" in argv and "--info=progress2,name2" in argv
    assert argv[argv.index("-e") + 1].startswith("ssh -i /k -p 22 -o BatchMode=yes")


def test_results_command_variants(config):
    skip = make_rsync_command(config, DEVICE, "results", key="/k", folder=MID, databases="skip", bwlimit_kib=500)
    assert "--compress" in skip and "--bwlimit=500" in skip and "--exclude=*.db-wal" in skip
    assert skip[-1] == f"/data/results/{MID}/"
    raw = make_rsync_command(config, DEVICE, "results", key="/k", folder=MID, databases="raw",
                             only=("E/2025/a.db", "E/2025/odd*[1].db"))
    assert raw[-1] == f"/data/results/.ethoscope-backup/raw/{MID}/{MID}/"
    filters = raw[raw.index("--include=*/"):raw.index("--exclude=*") + 1]
    assert filters == ("--include=*/", "--include=/E/2025/a.db", "--include=/E/2025/a.db-wal",
                       "--include=/E/2025/odd\\*\\[1].db", "--include=/E/2025/odd\\*\\[1].db-wal", "--exclude=*")
    assert "--delete" in raw and "--modify-window=-1" in raw


def test_safe_mode_keeps_replaced_versions(config):
    argv = make_rsync_command(config.changed(transfer={"safe": True}), DEVICE, "videos", key="/k", folder=MID,
                              stamp="2026-01-02_03-04-05")
    assert ("--backup" in argv and
            f"--backup-dir=/data/videos/.ethoscope-backup/replaced/2026-01-02_03-04-05/{MID}" in argv)


def test_ipv6_source(config):
    argv = make_rsync_command(config, Device(name="ETHOSCOPE_001", address="fe80::1"), "videos", key="/k",
                              folder=MID)
    assert argv[-2] == f"ethoscope@[fe80::1]:/ethoscope_data/videos/{MID}/"


def test_the_informative_line_is_the_tool_s_own():
    assert informative_line("ssh: connect to host 169.254.3.4 port 22: Connection timed out\r\n"
                            "rsync: connection unexpectedly closed (0 bytes received so far) [Receiver]\n"
                            "rsync error: unexplained error (code 255) at io.c(232) [Receiver=3.2.7]\n") == \
        "ssh: connect to host 169.254.3.4 port 22: Connection timed out"
    assert informative_line('unix_listener: path "/very/long/x" too long for Unix domain socket\n'
                            "rsync error: unexplained error (code 255)\n").startswith("unix_listener: path")
    line = informative_line('rsync: [sender] change_dir "/x" failed: No such file or directory (2)\n'
                            "rsync error: some files/attrs were not transferred (code 23)\n")
    assert line.startswith("rsync: [sender]")
    assert informative_line("") == ""


@pytest.mark.parametrize("code, ok, retry", [
    (0, True, False), (24, True, False), (12, False, True), (30, False, True), (255, False, True),
    (35, False, True), (1, False, False), (2, False, False), (3, False, False), (4, False, False),
    (126, False, False), (127, False, False), (23, False, False), (99, False, False)])
def test_exit_table(code, ok, retry):
    outcome = classify_exit(code)
    assert (outcome.ok, outcome.retry) == (ok, retry)


def test_permanent_ssh_failures_not_retried():
    stderr = "@@@@\n@    WARNING: REMOTE HOST IDENTIFICATION HAS CHANGED!     @\nHost key verification failed.\n"
    assert classify_exit(255, stderr).label == "host key changed"
    assert not classify_exit(255, "Permission denied (publickey).").retry
    assert classify_exit(255, "ethoscope@169.254.3.4: Permission denied (publickey,password).\r\n"
                              "rsync: connection unexpectedly closed").label == "ssh authentication refused"
    missing = 'rsync: [sender] change_dir "/ethoscope_data/videos" failed: No such file or directory (2)\n'
    assert classify_exit(23, missing).label == "remote folder missing or unreadable"


def test_file_and_node_errors_are_not_login_failures():
    """A file the device cannot read, or a folder the node cannot create, is not an ssh refusal."""
    unreadable = 'rsync: [sender] send_files failed to open "/ethoscope_data/results/x.db": Permission denied (13)\n'
    assert classify_exit(23, unreadable).label == "partial transfer due to error"
    node = 'rsync: [Receiver] mkdir "/ethoscope_data/videos/abc" failed: Permission denied (13)\n'
    assert classify_exit(23, node).label == "partial transfer due to error"
    receiver = 'rsync: [Receiver] change_dir#3 "/ethoscope_data/videos" failed: Permission denied (13)\n'
    assert classify_exit(3, receiver).label == "errors selecting input/output files or directories"


def test_progress_records():
    assert parse_progress("     21,463,042  71%   19.59MB/s    0:00:00  ") == \
        Progress(21463042, 71, 19.59 * 1024 * 1024)
    assert parse_progress("  30,000,005 100%   20.94kB/s    0:00:01 (xfr#3, to-chk=0/6)") == \
        Progress(30000005, 100, 20.94 * 1024, 0, 6)
    assert parse_progress("  5 100%   0.00B/s    0:00:01") == Progress(5, 100, 0.0)
    assert parse_progress("sending incremental file list") is None
    assert parse_progress("  5 100%   1.2.3MB/s    0:00:01") is None


def test_file_lines_and_escapes():
    assert parse_file_line("ETHOSCOPE-BACKUP-FILE >f+++++++++ 30000000 29999000 a/b/big.h264") == \
        FileEvent(">f+++++++++", 30000000, 29999000, "a/b/big.h264")
    event = parse_file_line("ETHOSCOPE-BACKUP-FILE >f.st...... 3 3 a/odd\\#012name with space.txt")
    assert event.name == "a/odd\nname with space.txt" and event.changed
    assert not parse_file_line("ETHOSCOPE-BACKUP-FILE cd+++++++++ 4096 0 a/").is_file
    assert not parse_file_line("ETHOSCOPE-BACKUP-FILE .f..t...... 3 0 a").changed
    assert parse_file_line("ETHOSCOPE-BACKUP-FILE >f..t...... 3 3 a").changed     # same size, new data
    assert parse_file_line("random text") is None
    assert unescape_name("caf\\#303\\#251") == "café"


def test_split_records_on_cr_and_lf():
    records, rest = split_records("a\r b\nc\r\rpartial")
    assert records == ("a", " b", "c") and rest == "partial"


STATS = """
Number of files: 7 (reg: 5, dir: 2)
Number of created files: 7 (reg: 5, dir: 2)
Number of regular files transferred: 5
Total file size: 177,471,596 bytes
Total transferred file size: 177,471,596 bytes
Literal data: 177,471,596 bytes
"""


def test_stats():
    assert parse_stats(STATS.splitlines()) == Stats(5, 177471596, 5, 177471596)
    assert parse_stats([]) == Stats()


def test_ciphers_option(tmp_path):
    path = tmp_path / "c.conf"
    path.write_text(f"[paths]\nupstream_config = {tmp_path}/none\n[ssh]\nciphers = aes128-gcm@openssh.com\n")
    argv = make_ssh_command(load_config(path), DEVICE, "/k")
    assert argv[-2:] == ("-c", "aes128-gcm@openssh.com")
    path.write_text("[ssh]\nciphers = aes; rm -rf /\n")
    with pytest.raises(Exception, match="not an ssh cipher list"):
        load_config(path)


def test_key_exchange_option(tmp_path):
    path = tmp_path / "c.conf"
    path.write_text(f"[paths]\nupstream_config = {tmp_path}/none\n[ssh]\nkex = \"\"\n")
    assert not any(a.startswith("KexAlgorithms") for a in make_ssh_command(load_config(path), DEVICE, "/k"))
    path.write_text(f"[paths]\nupstream_config = {tmp_path}/none\n[ssh]\nkex = -sntrup761x25519-sha512@openssh.com\n")
    argv = make_ssh_command(load_config(path), DEVICE, "/k")
    assert argv[argv.index("-l") - 1] == "KexAlgorithms=-sntrup761x25519-sha512@openssh.com"
    path.write_text("[ssh]\nkex = ^a b\n")
    with pytest.raises(Exception, match="not an ssh key exchange list"):
        load_config(path)


def test_ciphers_chosen_per_device():
    from ethoscope_rsync.backup.rsync import AES_FIRST, CHACHA_FIRST, choose_ciphers
    assert AES_FIRST.split(",")[0] == "aes128-gcm@openssh.com"
    assert CHACHA_FIRST.split(",")[0] == "chacha20-poly1305@openssh.com"
    assert sorted(AES_FIRST.split(",")) == sorted(CHACHA_FIRST.split(","))    # one set, two orders
    assert choose_ciphers("", True, True) == (AES_FIRST, "AES instructions on the node and the device")
    assert choose_ciphers("", True, False) == (CHACHA_FIRST, "no AES instructions on the device")
    assert choose_ciphers("", False, True) == (CHACHA_FIRST, "no AES instructions on the node")
    assert choose_ciphers("", None, True)[0] == CHACHA_FIRST                  # the node's CPU did not say
    assert choose_ciphers("", True, None) == ("", "chosen from the device's CPU once its probe answers (first contact)")
    assert choose_ciphers("", True, None, probed=True) == (
        "", "ssh's default: the device's CPU does not say whether it has AES instructions")
    assert choose_ciphers("", True, True, probed=True)[0] == AES_FIRST
    assert choose_ciphers("aes256-ctr", True, True) == ("aes256-ctr", "[ssh] ciphers")
    assert choose_ciphers("aes256-ctr", False, None) == ("aes256-ctr", "[ssh] ciphers")


def test_the_chosen_ciphers_reach_ssh_and_rsync(tmp_path):
    from ethoscope_rsync.backup.rsync import AES_FIRST
    path = tmp_path / "c.conf"
    path.write_text(f"[paths]\nupstream_config = {tmp_path}/none\n[ssh]\nciphers = aes256-ctr\n")
    config = load_config(path)
    assert make_ssh_command(config, DEVICE, "/k")[-2:] == ("-c", "aes256-ctr")          # None: [ssh] ciphers
    assert make_ssh_command(config, DEVICE, "/k", ciphers=AES_FIRST)[-2:] == ("-c", AES_FIRST)
    assert "-c" not in make_ssh_command(config, DEVICE, "/k", ciphers="")               # ssh's own default
    argv = make_rsync_command(config, DEVICE, "videos", key="/k", folder=MID, ciphers=AES_FIRST)
    assert argv[argv.index("-e") + 1].endswith(f" -c {AES_FIRST}")


def test_aes_instructions_in_cpuinfo():
    from ethoscope_rsync.backup.probe import has_aes
    x86 = "processor\t: 0\nmodel name\t: Xeon\nflags\t\t: fpu vme sse2 aes avx\n\nprocessor\t: 1\nflags\t\t: fpu\n"
    assert has_aes(x86) is True
    assert has_aes("processor\t: 0\nflags\t\t: fpu vme sse2 avx vaes_not\n") is False
    pi4 = "processor\t: 0\nBogoMIPS\t: 108.00\nFeatures\t: fp asimd evtstrm crc32 cpuid\n"
    pi5 = "processor\t: 0\nFeatures\t: fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid\n"
    assert has_aes(pi4) is False and has_aes(pi5) is True
    assert has_aes("") is None and has_aes("model name : ARMv7\n") is None


def test_stream_keeps_characters_split_across_reads(tmp_path):
    from ethoscope_rsync.system.execute import stream
    name = "a" + "é" * 40000    # 80 001 bytes: longer than one 64 KiB read, which ends mid-character
    script = tmp_path / "emit.py"
    script.write_text(f"import sys; sys.stdout.write({name!r} + '\\n')")
    records = []
    result = stream(("/usr/bin/python3", str(script)), records.append, timeout=30)
    assert result.returncode == 0 and records == [name]


def test_records_of_a_stream_are_bounded_and_linear():
    from ethoscope_rsync.system.execute import MAX_RECORD, _Records
    records = _Records()
    assert records.feed("a\rb") == ("a",)
    assert records.feed("c\n") == ("bc",)
    for _ in range(1000):                            # a line that never ends, fed 1 KB at a time
        assert records.feed("x" * 1024) == ()
    assert len(records.rest()) == MAX_RECORD
    (line,) = records.feed("\n")
    assert len(line) == MAX_RECORD and records.rest() == ""


def test_captured_output_is_bounded():
    from ethoscope_rsync.system.execute import MAX_STDERR, run
    result = run(("/bin/sh", "-c", "head -c 300000 /dev/zero | tr '\\0' e >&2; echo last >&2"), timeout=30)
    assert len(result.stderr) <= MAX_STDERR + 65536 and result.stderr.endswith("last\n")
    assert run(("/bin/echo", "a\0b"), timeout=5).returncode == 127      # a NUL: one clear failure


def test_unchanged_files_are_listed_too():
    """--info=name2 lists the files rsync left alone, with an itemize of spaces: they are parsed."""
    event = parse_file_line("ETHOSCOPE-BACKUP-FILE .f          123 0 a/b c.h264")
    assert event == FileEvent(".f         ", 123, 0, "a/b c.h264")
    assert event.is_file and not event.changed
