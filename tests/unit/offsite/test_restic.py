"""restic's argv and environment are built by pure functions: tested by equality."""
from pathlib import Path

import pytest

from ethoscope_rsync.config.syntax import parse_repository
from ethoscope_rsync.offsite import restic
from ethoscope_rsync.offsite.restic import Access, Retention

LOCAL = Access(parse_repository("/srv/restic"), Path("/run/credentials/x/restic-password"), Path("/var/lib/e/cache"))
SFTP_REPO = parse_repository("sftp://backup@nas.lab:2222//srv/ethoscope")
SSH = restic.sftp_command(SFTP_REPO, Path("/run/credentials/x/ssh-key"), Path("/var/lib/e/offsite_known_hosts"), 10)
SFTP = Access(SFTP_REPO, Path("/pw"), Path("/cache"), SSH)


def test_the_password_and_repository_go_in_the_childs_environment_only():
    env = restic.environment(Access(LOCAL.repository, LOCAL.password_file, LOCAL.cache_dir,
                                    environment=(("AWS_ACCESS_KEY_ID", "k"),)))
    assert env == {"RESTIC_REPOSITORY": "/srv/restic", "RESTIC_PASSWORD_FILE": "/run/credentials/x/restic-password",
                   "RESTIC_PASSWORD": "", "RESTIC_PASSWORD_COMMAND": "", "RESTIC_REPOSITORY_FILE": "",
                   "RESTIC_PROGRESS_FPS": "0.2", "AWS_ACCESS_KEY_ID": "k"}
    for argv in (restic.backup_argv(LOCAL, ("/r",), None, host="node"), restic.init_argv(LOCAL)):
        assert "/srv/restic" not in argv and not any("password" in a for a in argv)


def test_backup_argv():
    assert restic.backup_argv(LOCAL, ("/d/results", "/d/videos"), Path("/tmp/x/held-back"), host="node",
                              limit_upload=800) == (
        "restic", "--cache-dir", "/var/lib/e/cache", "backup", "--json", "--host", "node",
        "--tag", "ethoscope-backup", "--exclude=/d/results/**/.*", "--exclude=/d/results/**/*.db-wal",
        "--exclude=/d/results/**/*.db-shm", "--exclude=/d/results/**/*.db-journal", "--exclude=/d/videos/**/.*",
        "--exclude=/d/videos/**/*.db-wal", "--exclude=/d/videos/**/*.db-shm", "--exclude=/d/videos/**/*.db-journal",
        "--exclude-file", "/tmp/x/held-back", "--limit-upload", "800", "--", "/d/results", "/d/videos")
    odd = restic.backup_argv(LOCAL, ("/srv/.lab [2]/results/",), None, host="n")
    assert odd[odd.index("--json") + 5] == "--exclude=/srv/.lab \\[2\\]/results/**/.*"   # anchored, escaped
    assert restic.backup_argv(LOCAL, ("/d/results",), None, host="n", dry_run=True)[-3:] == (
        "--dry-run", "--", "/d/results")


def test_retention_and_the_other_commands():
    keep = Retention(7, 4, 12)
    base = ("restic", "--cache-dir", "/var/lib/e/cache")
    assert restic.forget_argv(LOCAL, keep, host="node") == base + (
        "forget", "--json", "--host", "node", "--tag", "ethoscope-backup", "--group-by", "host,tags",
        "--keep-daily", "7", "--keep-weekly", "4", "--keep-monthly", "12")
    assert restic.prune_argv(LOCAL) == base + ("prune",)
    assert restic.check_argv(LOCAL, 3, 12) == base + ("check", "--read-data-subset=3/12")
    assert restic.check_argv(LOCAL, 0, 0) == base + ("check",)
    assert restic.snapshots_argv(LOCAL, host="n") == base + (
        "snapshots", "--json", "--latest", "1", "--host", "n", "--tag", "ethoscope-backup")
    assert restic.init_argv(LOCAL) == base + ("init",)
    assert restic.config_argv(LOCAL) == base + ("cat", "config")
    assert restic.unlock_argv(LOCAL) == base + ("unlock",)
    assert restic.stats_argv(LOCAL) == base + ("stats", "--json", "--mode", "raw-data")
    assert restic.restore_argv(LOCAL, "latest", Path("/srv/r"), ("/d/results/x",)) == base + (
        "restore", "latest", "--target", "/srv/r", "--include=/d/results/x")


def test_an_sftp_repository_is_reached_with_our_ssh_command():
    assert SSH == ("ssh", "-i", "/run/credentials/x/ssh-key", "-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes",
                   "-o", "StrictHostKeyChecking=accept-new", "-o", "UserKnownHostsFile=/var/lib/e/offsite_known_hosts",
                   "-o", "GlobalKnownHostsFile=/dev/null", "-o", "UpdateHostKeys=no", "-o", "ConnectTimeout=10",
                   "-o", "ServerAliveInterval=5", "-o", "ServerAliveCountMax=3", "-o", "LogLevel=ERROR",
                   "-p", "2222", "-l", "backup", "nas.lab", "-s", "sftp")
    assert restic.init_argv(SFTP) == ("restic", "--cache-dir", "/cache", "-o", "sftp.command=" + " ".join(SSH), "init")
    df = restic.sftp_df_argv(SFTP_REPO, Path("/k"), Path("/kh"), 5)
    assert df[:3] == ("sftp", "-b", "-") and df[-6:] == ("-P", "2222", "-o", "User=backup", "--", "nas.lab")
    assert restic.sftp_df_input('/a "b"\\c') == b'df "/a \\"b\\"\\\\c"\n'


@pytest.mark.parametrize("path", ["/var/lib/my state/kh", "/a,b", '/a"b'])
def test_a_path_restic_cannot_be_given_in_its_ssh_command_is_refused(path):
    with pytest.raises(restic.UnsafeWord, match="space, a quote or a comma"):
        restic.sftp_command(SFTP_REPO, Path("/k"), Path(path), 10)


@pytest.mark.parametrize("path, line", [
    ("/d/results/a/b.db", b"/d/results/a/b.db\n"),
    ("/d/results/a/*x?[y]\\.db", b"/d/results/a/\\*x\\?\\[y\\]\\\\.db\n"),
    ("/d/results/$HOME.db", b"/d/results/$$HOME.db\n"),
    ("/d/results/a\nb.db", b"/d/results/a?b.db\n"),
    ("/d/results/ lead/trail.db ", b"/d/results/ lead/trail.db?\n"),
    ("/d/results/x\udcff.db", b"/d/results/x\xff.db\n"),
])
def test_a_held_back_database_is_one_exact_exclude_line(path, line):
    assert restic.exclude_line(path) == line
