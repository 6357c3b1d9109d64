"""System test: `apt install ethoscope-rsync` by name from the signed repository `make repo` builds, and
`apt upgrade` from the previous release (0.2.0) to this one, in a booted container of each release.

The repository is the one packaging/apt-repository.sh (make repo) writes, with a key generated for the
test, bound read-only into the container and added as README says (a deb822 source with Signed-By=).
The previous release is the package it shipped (tests/fixtures/releases). Before it is installed the node runs
a stand-in of an enabled upstream daemon (ethoscope_backup_sqlite), which 0.2.0 disabled and recorded
in /var/lib/ethoscope-rsync: the upgrade has to give it back as this release's switch, move the
record into the one state directory, and drop what 0.2.0 left (its alias of ethoscope_backup_unified,
its enabled timer). The container's Debian sources are left out of `apt-get update` (every dependency
is in the rootfs already), so the test needs no network.
"""
import json
import os
import re
import urllib.request

import pytest

from tests.system.container import (BASE_PACKAGES, REPO_ROOT, Container, dependency_names, free_port, listen_on,
                                    rootfs_for, run, wait_for)

# The previous release as built (tests/fixtures/releases/README.md says how).
PREVIOUS_DEB = REPO_ROOT / "tests" / "fixtures" / "releases" / "ethoscope-rsync_0.2.0_all.deb"
GUEST_REPO = "/srv/ethoscope-repo"
KEYRING = "/etc/apt/keyrings/ethoscope-rsync-archive-keyring.gpg"
SOURCES = "/etc/apt/sources.list.d/ethoscope-rsync.sources"
# Only the package's own source: the rootfs holds every dependency, and the test needs no network.
APT_OPTS = ["-o", "Dir::Etc::SourceList=/dev/null", "-o", "APT::Get::List-Cleanup=false"]
APT_ENV = ["env", "DEBIAN_FRONTEND=noninteractive"]
SOCKET, TIMER = "ethoscope-backup-status.socket", "ethoscope-backup.timer"
SQLITE = "ethoscope_backup_sqlite.service"
STAND_IN = ("[Unit]\nDescription=stand-in for the upstream sqlite backup daemon\n[Service]\n"
            "ExecStart=/bin/sleep infinity\n[Install]\nWantedBy=multi-user.target\n")


def make_repo(repo, gnupg, *debs):
    return run([str(REPO_ROOT / "packaging" / "apt-repository.sh"), str(repo)] + [str(d) for d in debs],
               env=dict(os.environ, REPO_GNUPGHOME=str(gnupg)), timeout=120)


@pytest.fixture(scope="session")
def previous_deb():
    assert PREVIOUS_DEB.is_file(), PREVIOUS_DEB
    return PREVIOUS_DEB


@pytest.fixture(scope="module")
def repo(tmp_path_factory, previous_deb, suite):
    """A repository holding only the previous release (the new one is added by the upgrade test)."""
    base = tmp_path_factory.mktemp("repo-" + suite)
    make_repo(base / "repo", base / "gnupg", previous_deb)
    return base


@pytest.fixture(scope="module")
def box(repo, deb, previous_deb, suite):
    rootfs = rootfs_for(BASE_PACKAGES + dependency_names(deb) + dependency_names(previous_deb), suite)
    port = free_port()
    with Container(rootfs, "ethrepo%s%d" % (suite[0], os.getpid()), binds_ro=[(str(repo / "repo"), GUEST_REPO)]) as c:
        c.port = port
        listen_on(c, port)
        # An upstream daemon, enabled and running, as on a node before the package.
        c.write("/etc/systemd/system/" + SQLITE, STAND_IN)
        c.systemctl("daemon-reload")
        c.systemctl("enable", "--now", SQLITE)
        yield c
        print(c.sh("journalctl -b --no-pager -n 60 -u 'ethoscope*'", check=False).stdout)


def apt(box, *args, timeout=300, check=True):
    return box.exec(APT_ENV + list(args[:1]) + APT_OPTS + list(args[1:]), timeout=timeout, check=check)


def installed_version(box):
    return box.exec(["dpkg-query", "-W", "-f", "${Version}", "ethoscope-rsync"]).stdout


def status_answer(port):
    try:
        req = urllib.request.Request("http://127.0.0.1:%d/" % port, headers={"Accept": "application/json"})
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, json.loads(r.read())
    except OSError:
        return None


def test_a_source_signed_by_another_key_is_refused(box):
    box.write(SOURCES, "Types: deb\nURIs: file:%s\nSuites: ./\n"
              "Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n" % GUEST_REPO)
    p = apt(box, "apt-get", "update", check=False)
    out = p.stdout + p.stderr
    assert p.returncode != 0 and re.search(r"^E: .*not signed", out, re.M), out
    assert "0.2.0" not in apt(box, "apt-cache", "policy", "ethoscope-rsync").stdout


def test_installs_by_name_from_the_signed_repository(box, repo, suite):
    # README, "Installing on a real node": the key for Signed-By=, the source, apt install by name.
    box.write(KEYRING, (repo / "repo" / "ethoscope-rsync-archive-keyring.gpg").read_bytes())
    box.write(SOURCES, "Types: deb\nURIs: file:%s\nSuites: ./\nSigned-By: %s\n" % (GUEST_REPO, KEYRING))
    p = apt(box, "apt-get", "update")
    assert not re.search(r"^(W|E): ", p.stdout + p.stderr, re.M), p.stdout + p.stderr
    apt(box, "apt-get", "install", "-y", "-q", "--no-install-recommends", "ethoscope-rsync")
    assert installed_version(box) == "0.2.0"
    # What 0.2.0 did to the node: the upstream daemon stopped and disabled (recorded), its alias in place.
    assert box.systemctl("is-enabled", SQLITE, check=False).stdout.strip() == "disabled"
    assert box.path("/var/lib/ethoscope-rsync/upstream-units-disabled").read_text() == "ethoscope_backup_sqlite\n"
    assert box.path("/etc/systemd/system/ethoscope_backup_unified.service").is_symlink()
    assert box.path("/etc/systemd/system/timers.target.wants/" + TIMER).is_symlink()


def test_apt_upgrade_to_this_release(box, repo, deb):
    make_repo(repo / "repo", repo / "gnupg", deb)
    apt(box, "apt-get", "update")
    p = apt(box, "apt", "upgrade", "-y", "-q")
    print(p.stdout)
    assert installed_version(box) == deb.name.split("_")[1]
    # The units and the switches' drop-ins moved from /lib to /usr/lib within the package: all there.
    listed = box.exec(["dpkg", "-L", "ethoscope-rsync"]).stdout.split()
    for unit in [line for line in listed if line.startswith("/usr/lib/systemd/system/")]:
        assert box.path(unit).exists(), unit
    assert "/usr/lib/systemd/system/ethoscope-backup.service" in listed
    assert not [line for line in listed if line.startswith("/lib/")], listed
    # One state directory: the record moved, the old directory gone.
    assert not box.path("/var/lib/ethoscope-rsync").exists()
    record = box.path("/var/lib/ethoscope-backup/package")
    assert box.sh("stat -c %U:%a /var/lib/ethoscope-backup/package").stdout.strip() == "root:700"
    assert (record / "upstream-units-running").read_text() == "ethoscope_backup_sqlite\n"
    # What 0.2.0 left is gone; the daemon it disabled is enabled again, as this release's switch, on.
    assert not box.path("/etc/systemd/system/ethoscope_backup_unified.service").is_symlink()
    assert not box.path("/etc/systemd/system/timers.target.wants/" + TIMER).exists()
    assert box.systemctl("is-enabled", SQLITE, check=False).stdout.strip() == "enabled"
    assert box.systemctl("is-active", SQLITE, check=False).stdout.strip() == "active"
    assert box.show(SQLITE, "ExecStart").find("sleep") < 0, box.show(SQLITE, "ExecStart")
    assert box.systemctl("is-active", TIMER, check=False).stdout.strip() == "active"
    assert box.systemctl("is-active", "ethoscope_backup_unified.service", check=False).stdout.strip() == "inactive"
    # The status socket kept, answering.
    assert box.systemctl("is-enabled", SOCKET, check=False).stdout.strip() == "enabled"
    code, doc = wait_for(lambda: status_answer(box.port), 30, interval=0.5, what="GET / after the upgrade")
    assert code == 200 and "status" in doc, doc
    # Switched off, the timer stops with it (no enablement of its own left from 0.2.0).
    box.systemctl("stop", SQLITE)
    wait_for(lambda: box.systemctl("is-active", TIMER, check=False).stdout.strip() == "inactive", 30,
             interval=0.3, what="the timer to stop with the last switch")


def test_purge_after_the_upgrade_gives_the_daemon_back(box):
    apt(box, "apt-get", "purge", "-y", "-q", "ethoscope-rsync")
    assert not box.path("/var/lib/ethoscope-backup").exists()
    assert not box.path("/var/lib/ethoscope-rsync").exists()
    assert box.systemctl("is-active", SQLITE, check=False).stdout.strip() == "active"
    assert "sleep" in box.show(SQLITE, "ExecStart")
    assert box.systemctl("is-enabled", SQLITE, check=False).stdout.strip() == "enabled"
