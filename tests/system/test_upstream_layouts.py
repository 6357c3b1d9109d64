"""System test: every layout of the upstream backup units found on nodes, before, during and after
ethoscope-rsync (issue 21, items 2 and 7).

The upstream installer links its units into /usr/lib/systemd/system; nodes set up earlier or by hand
have them linked into /etc/systemd/system, or copied there. In a booted Debian container (a network
namespace of its own: port 8093 is really free for whoever takes it), stand-ins of the upstream
daemons are installed in one layout and set up as a node has them:

  ethoscope_backup_unified  enabled and running (answers on 8093)
  ethoscope_backup_video    running, not enabled
  ethoscope_backup_sqlite   enabled, not running

Installing the package stops the daemons and makes the three names the node's switches: on for
what ran or was enabled, each one switching the backup timer as the node expects, the upstream
files and their enablement untouched. Purging gives the node back what it had: the same files and
links, the same enablement, and the daemons that ran running again.

Run as root: /usr/bin/python3 -m pytest -p no:cacheprovider tests/system/test_upstream_layouts.py
"""
import json
import os

import pytest

from tests.system.container import (BASE_PACKAGES, GUEST_DEB_DIR, Container, LabNetns, dependency_names, install,
                                    rootfs_for, wait_for)
from tests.system.test_package import TIMER

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (systemd-nspawn, network namespaces)")

UNIFIED, SQLITE, VIDEO = "ethoscope_backup_unified", "ethoscope_backup_sqlite", "ethoscope_backup_video"
NAMES = (UNIFIED, SQLITE, VIDEO)
LAYOUTS = ("linked into /usr/lib/systemd/system", "linked into /etc/systemd/system", "copied into /etc/systemd/system")
STAND_IN = r'''
import http.server, json, sys, time
port, what = int(sys.argv[1]), sys.argv[2]
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = json.dumps({"stand_in": what}).encode()
        self.send_response(200); self.send_header("Content-Type", "application/json"); self.end_headers()
        self.wfile.write(body)
if port:
    http.server.HTTPServer(("", port), H).serve_forever()
while True:
    time.sleep(3600)
'''


def unit_text(name, port):
    return ("[Unit]\nDescription=stand-in for the upstream %s\nWants=network-online.target\n[Service]\n"
            "Type=simple\nWorkingDirectory=/opt/ethoscope/src/node/scripts/\n"
            "ExecStart=/usr/bin/python3 /opt/ethoscope/stand_in.py %d %s\nRestartSec=5\nRestart=always\n"
            "[Install]\nWantedBy=multi-user.target\n" % (name, port, name))


def place(box, layout):
    """The stand-ins' unit files, placed as `layout` says."""
    box.write("/opt/ethoscope/stand_in.py", STAND_IN)
    box.sh("mkdir -p /opt/ethoscope/src/node/scripts /opt/ethoscope/services")
    for name in NAMES:
        text = unit_text(name, 8093 if name == UNIFIED else 0)
        if layout == LAYOUTS[2]:
            box.write("/etc/systemd/system/%s.service" % name, text)
            continue
        box.write("/opt/ethoscope/services/%s.service" % name, text)
        folder = "/usr/lib/systemd/system" if layout == LAYOUTS[0] else "/etc/systemd/system"
        box.sh("ln -s /opt/ethoscope/services/%s.service %s/" % (name, folder))
    box.systemctl("daemon-reload")
    box.systemctl("enable", UNIFIED, SQLITE)
    box.systemctl("start", UNIFIED, VIDEO)


def unit_files(box):
    """Every file and link of the upstream names in the unit folders (and their wants links): path -> target."""
    found = {}
    for folder in ("/etc/systemd/system", "/usr/lib/systemd/system"):
        listing = box.sh("find %s -name 'ethoscope_backup_*' ! -path '*.service.d*' -printf '%%p %%l\\n'" % folder,
                         check=False).stdout
        for line in listing.splitlines():
            path, _, target = line.partition(" ")
            found[path] = target
    return found


def states(box):
    return {name: (box.systemctl("is-enabled", name, check=False).stdout.strip(),
                   box.systemctl("is-active", name, check=False).stdout.strip()) for name in NAMES}


def stand_ins(box):
    """The stand-in daemons running in the container (read from its /proc)."""
    running = set()
    for entry in box.path("/proc").iterdir():
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if entry.name.isdigit() and b"/opt/ethoscope/stand_in.py" in argv:
            running.add(argv[-2].decode())
    return running


def answer(box):
    p = box.exec(["curl", "-s", "-m", "10", "-H", "Accept: application/json", "http://127.0.0.1:8093/"],
                 check=False, timeout=30)
    try:
        return json.loads(p.stdout) if p.returncode == 0 else None
    except ValueError:
        return None


@pytest.fixture(scope="module")
def lab():
    from tests.lab import Lab
    with Lab("syslay%d" % os.getpid(), 1) as lab:
        yield lab


@pytest.fixture(scope="module", params=LAYOUTS)
def upstream(request, deb, lab, suite):
    """A node with the stand-ins in one layout, running and enabled as the module's docstring says."""
    rootfs = rootfs_for(BASE_PACKAGES + dependency_names(deb), suite)
    name = "ethlay%s%d%d" % (suite[0], os.getpid(), LAYOUTS.index(request.param))
    with LabNetns(lab, name, host_number=6 + LAYOUTS.index(request.param)) as netns, \
            Container(rootfs, name, binds_ro=[(str(deb.parent), GUEST_DEB_DIR)], netns=netns.name) as box:
        place(box, request.param)
        wait_for(lambda: (answer(box) or {}).get("stand_in") == UNIFIED, 30, what="the stand-in on 8093")
        box.before = {"files": unit_files(box), "states": states(box), "running": stand_ins(box)}
        assert box.before["running"] == {UNIFIED, VIDEO}, box.before
        assert box.before["states"][SQLITE] == ("enabled", "inactive"), box.before
        box.layout = request.param
        yield box
        print(box.sh("journalctl -b --no-pager -n 60 -u 'ethoscope*'", check=False).stdout)


def test_install_purge_and_the_switches_in_each_layout(upstream, deb):
    box = upstream
    installed = install(box, deb, timeout=300)
    lines = [line for line in installed.stdout.splitlines() if line.startswith("ethoscope-rsync:")]
    assert any(line.startswith("ethoscope-rsync: stopped the upstream backup daemon(s) %s %s:" % (UNIFIED, VIDEO))
               for line in lines), installed.stdout
    assert "ethoscope-rsync: backups switched on: %s %s %s " % (UNIFIED, SQLITE, VIDEO) in installed.stdout
    # the daemons stepped aside; their names are switches, their files and enablement as they were
    assert stand_ins(box) == set()
    assert unit_files(box) == box.before["files"], box.layout
    assert {n: s[0] for n, s in states(box).items()} == {n: s[0] for n, s in box.before["states"].items()}
    assert {n: s[1] for n, s in states(box).items()} == dict.fromkeys(NAMES, "active")
    doc = wait_for(lambda: answer(box), 30, interval=0.3, what="ethoscope-rsync on 8093")
    assert "stand_in" not in doc and set(doc) >= {"status", "last_backup"}
    for name in NAMES:
        assert "zz-ethoscope-rsync.conf" in box.show(name + ".service", "DropInPaths")
        assert not box.show(name + ".service", "FragmentPath").startswith("/run/systemd/generator")
    # the node's switches with the upstream units there: off only once all are off, on again
    box.systemctl("stop", UNIFIED)
    assert box.systemctl("is-active", TIMER, check=False).stdout.strip() == "active"   # sqlite, video still on
    box.systemctl("stop", SQLITE, VIDEO)
    wait_for(lambda: box.systemctl("is-active", TIMER, check=False).stdout.strip() == "inactive", 30,
             what="the timer to stop with the last switch")
    box.systemctl("start", SQLITE)
    assert box.systemctl("is-active", TIMER, check=False).stdout.strip() == "active"
    assert stand_ins(box) == set()
    # purge: the node as it was
    purged = box.exec(["apt-get", "purge", "-y", "-q", "ethoscope-rsync"], timeout=300)
    assert ("ethoscope-rsync: started the upstream backup daemon(s) %s %s again" % (UNIFIED, VIDEO)) \
        in purged.stdout, purged.stdout
    assert unit_files(box) == box.before["files"], box.layout
    wait_for(lambda: stand_ins(box) == {UNIFIED, VIDEO}, 30, what="the daemons that ran to run again")
    assert states(box) == box.before["states"]
    for name in NAMES:
        assert box.show(name + ".service", "DropInPaths") == ""
    wait_for(lambda: answer(box) == {"stand_in": UNIFIED}, 30, interval=0.3, what="the stand-in back on 8093")
    assert not box.path("/var/lib/ethoscope-rsync").exists()
