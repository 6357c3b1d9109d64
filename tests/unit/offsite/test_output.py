"""restic's answers are parsed as hostile input, and a failure is named by what restic or ssh said."""
import json

import pytest

from ethoscope_rsync.offsite import output
from ethoscope_rsync.offsite.output import FileError, Progress, Summary
from ethoscope_rsync.system.execute import Result

SUMMARY = ('{"message_type":"summary","files_new":2,"files_changed":1,"files_unmodified":5,"dirs_new":4,'
           '"dirs_changed":0,"dirs_unmodified":0,"data_blobs":6,"tree_blobs":5,"data_added":5002396,'
           '"total_files_processed":8,"total_bytes_processed":5000003,"total_duration":0.324811276,'
           '"snapshot_id":"97b6fc34b25c0af96e1bae3548023a450a49f44c121ed09d8a9b5ad319efd817"}')


def test_backup_lines():
    assert output.parse_backup_line(SUMMARY) == Summary("97b6fc34", 2, 1, 5, 5002396, 8, 5000003, 0.324811276)
    status = ('{"message_type":"status","percent_done":0.4963561021863387,"total_files":2,"files_done":1,'
              '"total_bytes":5000003,"bytes_done":2481782,"current_files":["/data/a/v1.h264"]}')
    assert output.parse_backup_line(status) == Progress(49.6, 1, 2, 2481782, 5000003)
    error = ('{"message_type":"error","error":{"Op":"open","Path":"x","Err":13},"during":"archival",'
             '"item":"/d/x\\u001b[31m"}')
    assert output.parse_backup_line(error) == FileError("/d/x\\x1b[31m", "?")
    error = '{"message_type":"error","error":"permission denied","item":"/d/y"}'
    assert output.parse_backup_line(error) == FileError("/d/y", "permission denied")


@pytest.mark.parametrize("line", [
    "", "not json", "[1, 2]", '{"message_type":"summary","data_added":-5}',
    '{"message_type":"summary","files_new":1e400}',
    '{"message_type":"status","files_done":"many"}', '{"message_type":"status","bytes_done":true}',
    '{"message_type":"verbose_status"}', "{" * 100000, '{"message_type":"summary","x":"' + "a" * 70000 + '"}',
])
def test_what_is_not_a_sound_restic_line_is_ignored(line):
    assert output.parse_backup_line(line) is None


def test_a_summary_with_a_strange_snapshot_id_has_none():
    line = SUMMARY.replace("97b6fc34b25c", "../../etc/x")
    assert output.parse_backup_line(line).snapshot == ""
    no_id = SUMMARY.replace(',"snapshot_id":"97b6fc34b25c0af96e1bae3548023a450a49f44c121ed09d8a9b5ad319efd817"', "")
    assert output.parse_backup_line(no_id).snapshot == ""


def test_times():
    assert output.parse_time("2026-12-07T20:31:32.12196745Z") == pytest.approx(1796675492.12196745)
    assert output.parse_time("2026-12-07T21:31:32+01:00") == 1796675492.0
    for bad in ("yesterday", "2026-13-07T20:31:32Z", 5, None, "2026-12-07T20:31:32.1234567891Z", "x" * 100):
        assert output.parse_time(bad) is None


def test_snapshots_stats_forget_and_df():
    text = json.dumps([{"time": "2026-12-07T20:31:32Z", "id": "ab" * 32, "hostname": "node",
                        "tags": ["ethoscope-backup"],
                        "paths": ["/d/results"]}, {"time": "2026-12-06T20:31:32Z", "id": "cd" * 32},
                       {"time": "bad", "id": "ef" * 32}, {"id": "not hex", "time": "2026-12-06T20:31:32Z"}, 7])
    found = output.parse_snapshots(text)
    assert [(s.id, s.host, s.tags) for s in found] == [("cdcdcdcd", "", ()),
                                                       ("abababab", "node", ("ethoscope-backup",))]
    assert output.parse_snapshots("{") == [] and output.parse_snapshots('{"a": 1}') == []
    assert output.parse_stats('{"total_size":5001737,"total_file_count":0,"snapshots_count":1}\n') == 5001737
    assert output.parse_stats("") is None and output.parse_stats('{"total_size":-1}') is None
    forget = json.dumps([{"keep": [{}], "remove": [{}, {}]}, {"remove": None}, {"remove": [{}]}])
    assert output.parse_forget(forget + "\n") == 3 and output.parse_forget("null") is None
    df = ("sftp> df \"/srv/ethoscope\"\n        Size         Used        Avail       (root)    %Capacity\n"
          "     2086912       532480      1554432      1554432          25%\n")
    assert output.parse_df(df) == (2086912 * 1024, 1554432 * 1024)
    assert output.parse_df("sftp> df x\nCouldn't statvfs\n") is None


def result(code=1, stderr="", stdout="", **kw):
    return Result(("restic",), code, stdout, stderr, **kw)


@pytest.mark.parametrize("stderr, code, problem, detail", [
    ("Fatal: wrong password or no key found\n", 1, output.PASSWORD, "Fatal: wrong password or no key found"),
    ("Fatal: unable to open config file: stat /x/config: no such file or directory\nIs there a repository at the "
     "following location?\n/x\n", 1, output.MISSING,
     "Fatal: unable to open config file: stat /x/config: no such file or directory"),
    ("subprocess ssh: ssh: connect to host 169.254.9.9 port 22: No route to host\nFatal: unable to open repository at "
     "sftp:u@169.254.9.9:/x: unable to start the sftp session, error: EOF\n", 1, output.UNREACHABLE,
     "Fatal: unable to open repository at sftp:u@169.254.9.9:/x: unable to start the sftp session, error: EOF"),
    ("subprocess ssh: Timeout, server 169.254.1.11 not responding.\nSave(<data/0c>) returned error, retrying after "
     "0.5s: Write: connection lost\nFatal: unable to save snapshot: ssh command exited: exit status 255\n", 1,
     output.UNREACHABLE, "Fatal: unable to save snapshot: ssh command exited: exit status 255"),
    ("subprocess ssh: Host key verification failed.\nFatal: unable to open repository\n", 1, output.HOST_KEY,
     "Fatal: unable to open repository"),
    ("subprocess ssh: u@nas: Permission denied (publickey).\n", 1, output.REFUSED,
     "subprocess ssh: u@nas: Permission denied (publickey)."),
    ("Fatal: unable to save snapshot: write /x/data/bc/bc40-tmp-3: no space left on device\n", 1, output.FULL,
     "Fatal: unable to save snapshot: write /x/data/bc/bc40-tmp-3: no space left on device"),
    ("unable to create lock in backend: repository is already locked exclusively by PID 7\n", 1, output.LOCKED,
     "unable to create lock in backend: repository is already locked exclusively by PID 7"),
    ("Fatal: repository contains errors\n", 1, output.DAMAGED, "Fatal: repository contains errors"),
    ("Fatal: something new\n", 1, output.FAILED, "Fatal: something new"),
    ("", 1, output.FAILED, "exit status 1"),
    ("Fatal: x\n", 10, output.MISSING, "Fatal: x"),             # restic 0.17 and later
    ("Fatal: x\n", 11, output.LOCKED, "Fatal: x"),
    ("Fatal: x\n", 12, output.PASSWORD, "Fatal: x"),
    ("Warning: at least one source file could not be read\n", 3, output.UNREADABLE,
     "Warning: at least one source file could not be read"),
    ("cannot run restic: No such file or directory", 127, output.NOT_INSTALLED,
     "restic is not installed (apt install restic)"),
])
def test_failures_are_named_by_who_said_what(stderr, code, problem, detail):
    assert output.classify(result(code, stderr)) == output.Failure(problem, detail)


def test_success_timeouts_and_stops():
    assert output.classify(result(0)) is None
    assert output.classify(result(-9, timed_out=True)).problem == output.TIMED_OUT
    assert output.classify(result(130, interrupted=True)).problem == output.STOPPED


def test_restics_words_become_one_printable_bounded_line():
    failure = output.classify(result(1, "Fatal: \x1b]0;owned\x07 " + "x" * 1000 + "\n"))
    assert "\x1b" not in failure.detail and "\n" not in failure.detail and len(failure.detail) < 400


def test_check_says_sound_only_in_its_own_words():
    assert output.check_result(result(0, stdout="load indexes\nno errors were found\n")) == (
        True, "no errors were found")
    assert output.check_result(result(0, stdout="")) == (
        False, "restic check ended without saying the repository is sound")
    assert output.check_result(result(1, "Fatal: repository contains errors\n")) == (
        False, "repository damaged: Fatal: repository contains errors")
