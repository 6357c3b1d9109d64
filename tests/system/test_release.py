"""System test: the package as each release sees it, in a booted container of each (Debian 12 and 13): that
release's lintian --pedantic, the units where it wants them, systemd-analyze verify of every unit and
the sandboxing (systemd-analyze security) of every service, with the figures README quotes.
"""
import os
import re

import pytest

from tests.system.container import (BASE_PACKAGES, GUEST_DEB_DIR, Container, dependency_names, free_port, install,
                                    listen_on, rootfs_for, run)

UNITS = ["ethoscope-backup.service", "ethoscope-backup.timer",
         "ethoscope-backup-status.socket", "ethoscope-backup-status.service"]
RUNNER, STATUS = "ethoscope-backup.service", "ethoscope-backup-status.service"
SWITCH = "ethoscope_backup_unified.service"


@pytest.fixture(scope="module")
def box(deb, suite):
    rootfs = rootfs_for(BASE_PACKAGES + dependency_names(deb), suite)
    with Container(rootfs, "ethrel%s%d" % (suite[0], os.getpid()), binds_ro=[(str(deb.parent), GUEST_DEB_DIR)]) as c:
        listen_on(c, free_port())
        install(c, deb)
        yield c


def test_lintian_pedantic_clean(box, deb):
    # The release's own lintian, in its container (as nobody: lintian warns when run as root).
    p = box.exec(["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", "env", "HOME=/nonexistent",
                  "lintian", "--pedantic", "--tag-display-limit", "0", "%s/%s" % (GUEST_DEB_DIR, deb.name)],
                 check=False, timeout=300)
    tags = [line for line in p.stdout.splitlines() if re.match(r"^[EW]: ", line)]
    print(box.exec(["lintian", "--version"]).stdout, p.stdout, p.stderr)
    assert not tags, "\n".join(tags)
    assert p.returncode == 0 and not p.stderr.strip(), p.stdout + p.stderr


def test_units_are_where_the_release_wants_them(deb):
    # /usr-merge: nothing under /lib (Debian 13's place for units is /usr/lib/systemd/system, and on
    # Debian 12 /lib is a link to /usr/lib).
    names = [line.split()[-1] for line in run(["dpkg-deb", "-c", str(deb)]).stdout.splitlines()]
    assert not [n for n in names if n.startswith(("./lib/", "./bin/", "./sbin/"))], names
    assert "./usr/lib/systemd/system/ethoscope-backup.service" in names


# Every service of the package on this release (timers and sockets have no exposure); README,
# "Sandboxing", quotes the figures this prints for both releases.
EVERY_SERVICE_LIMIT = {RUNNER: 3.0, STATUS: 2.0, "ethoscope-backup-alert.service": 2.0,
                       "ethoscope-backup-verify.service": 2.0, "ethoscope-backup-offsite.service": 2.0, SWITCH: 1.0}


def test_every_unit_verifies_and_every_service_is_sandboxed(box, suite):
    listed = box.exec(["dpkg", "-L", "ethoscope-rsync"]).stdout.split()
    units = [line for line in listed if re.match(r"^/usr/lib/systemd/system/[^/]+\.(service|timer|socket)$", line)]
    assert {u.rsplit("/", 1)[1] for u in units} >= set(UNITS) | (set(EVERY_SERVICE_LIMIT) - {SWITCH}), units
    # The switch where the upstream tool never was: the generator's unit, with the package's drop-in.
    generated = "/run/systemd/generator.late/" + SWITCH
    assert box.path(generated).is_file()
    p = box.exec(["systemd-analyze", "verify", "--man=no"] + units + [generated], check=False)
    assert p.returncode == 0 and not (p.stdout + p.stderr).strip(), p.stdout + p.stderr
    figures = {}
    for unit, limit in EVERY_SERVICE_LIMIT.items():
        out = box.exec(["systemd-analyze", "security", "--no-pager", unit], check=False).stdout
        m = re.search(r"Overall exposure level for %s: (\d+\.\d+)" % re.escape(unit), out)
        assert m, out
        figures[unit] = float(m.group(1))
    systemd = box.exec(["systemctl", "--version"]).stdout.split()[1]
    print("exposure on %s (systemd %s): %s" % (suite, systemd, ", ".join("%s %.1f" % kv for kv in figures.items())))
    assert all(figures[u] <= limit for u, limit in EVERY_SERVICE_LIMIT.items()), figures
