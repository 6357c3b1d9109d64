"""Helpers for the system test: build the .deb, cache a rootfs per Debian release, boot it with systemd-nspawn.

Every wait is bounded; a booted container is always torn down (SIGTERM to nspawn, SIGKILL after a bound).
"""
import fcntl
import hashlib
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
from pathlib import Path
from tests.polling import wait_for  # noqa: F401 (re-exported for the system test)

REPO_ROOT = Path(__file__).resolve().parents[2]
CACHE_DIR = Path(os.environ.get("ETHOSCOPE_TEST_CACHE", "/var/cache/ethoscope-rsync-test"))
# Every system test runs on each release (the `suite` fixture, tests/system/conftest.py); ETHOSCOPE_TEST_SUITES
# (comma-separated) narrows the list, e.g. to bisect a failure on one release.
SUITES = ("bookworm", "trixie")
# What the container needs besides the package's own dependencies (read from the built .deb): lintian and
# python3-pytest so that the package is linted and the unit tests run with the release's own tools.
BASE_PACKAGES = ["systemd", "systemd-sysv", "dbus", "python3", "curl", "ca-certificates", "lintian",
                 "python3-pytest"]
CONTAINER_PATH = "PATH=/usr/sbin:/usr/bin:/sbin:/bin"
GUEST_DEB_DIR = "/mnt/ethoscope-deb"            # not /tmp: the container's /tmp is its own tmpfs
STATUS_SOCKET = "ethoscope-backup-status.socket"


def run(argv, timeout=120, check=True, **kw):
    p = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, **kw)
    if check and p.returncode != 0:
        raise AssertionError("%s -> %d\nstdout:\n%s\nstderr:\n%s"
                             % (argv, p.returncode, p.stdout[-4000:], p.stderr[-4000:]))
    return p


def free_port():
    """A TCP port free on this host now (the containers share its network)."""
    with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as s:
        s.bind(("::", 0))
        return s.getsockname()[1]


def listen_on(container, address):
    """The package's status socket on `address` (a port, or host:port) in `container`: written before
    the install, so that the socket starts there and runs beside the host's and other containers'."""
    container.write("/etc/systemd/system/%s.d/test-port.conf" % STATUS_SOCKET,
                    "[Socket]\nListenStream=\nListenStream=%s\n" % address)


def install(container, deb, timeout=180):
    """apt installs the built package (bound at GUEST_DEB_DIR) as a lab does, no recommends beyond the
    rootfs's; apt's output is returned."""
    return container.exec(["env", "DEBIAN_FRONTEND=noninteractive", "apt-get", "install", "-y", "-q",
                           "--no-install-recommends", "%s/%s" % (GUEST_DEB_DIR, deb.name)], timeout=timeout)


# ---------------------------------------------------------------------------------------- build
def build_deb(workdir):
    """dpkg-buildpackage -us -uc -b on a copy of the working tree (tracked + untracked, not ignored).

    Returns the path of the built ethoscope-rsync_*_all.deb (in workdir/out)."""
    workdir = Path(workdir)
    src = workdir / "ethoscope-rsync"
    src.mkdir(parents=True)
    files = run(["git", "-C", str(REPO_ROOT), "ls-files", "-z", "--cached", "--others", "--exclude-standard"]).stdout
    for rel in filter(None, files.split("\0")):
        s = REPO_ROOT / rel
        if not s.is_file():        # deleted but still in the index
            continue
        d = src / rel
        d.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(s, d)
    env = dict(os.environ)
    # The unit tests run on their own (make unit); this test is about the package and the units.
    env["DEB_BUILD_OPTIONS"] = "nocheck"
    run(["dpkg-buildpackage", "-us", "-uc", "-b"], cwd=str(src), env=env, timeout=600)
    debs = sorted(workdir.glob("ethoscope-rsync_*_all.deb"))
    assert len(debs) == 1, debs
    out = workdir / "out"
    out.mkdir()
    shutil.copy2(debs[0], out / debs[0].name)
    return out / debs[0].name


def deb_field(deb, field):
    return run(["dpkg-deb", "-f", str(deb), field]).stdout.strip()


def dependency_names(deb):
    """First alternative of every Depends/Recommends entry, without versions or :any."""
    names = []
    for field in ("Depends", "Recommends"):
        for entry in filter(None, (e.strip() for e in deb_field(deb, field).split(","))):
            first = entry.split("|")[0].strip()
            names.append(re.split(r"[\s(:]", first, maxsplit=1)[0])
    return names


# ---------------------------------------------------------------------------------------- rootfs
def rootfs_for(packages, suite, timeout=900):
    """A cached rootfs of SUITE (bookworm, trixie) with these packages; built once (mmdebstrap, ~1 min), then reused.

    The cache key is the hash of the suite and the sorted package list, so a new dependency gives
    a new rootfs. Built into a temporary directory and renamed into place, under a lock."""
    packages = sorted(set(packages))
    key = hashlib.sha256(("%s\n%s" % (suite, " ".join(packages))).encode()).hexdigest()[:16]
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    target = CACHE_DIR / ("rootfs-" + key)
    with open(CACHE_DIR / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (target / "etc" / "os-release").exists():
            return target
        tmp = Path(tempfile.mkdtemp(prefix=".build-", dir=str(CACHE_DIR)))
        try:
            run(["mmdebstrap", "--variant=minbase", "--include=" + ",".join(packages),
                 "--dpkgopt=path-exclude=/usr/share/doc/*", "--dpkgopt=path-include=/usr/share/doc/*/copyright",
                 suite, str(tmp)], timeout=timeout)
            # Instant boot: nothing in the container waits for a network of its own (it shares the host's).
            (tmp / "etc" / "hostname").write_text("ethoscope-systest\n")
            if target.exists():
                shutil.rmtree(target)
            tmp.rename(target)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
    return target


# ---------------------------------------------------------------------------------------- container
class Container:
    """A booted systemd-nspawn container (volatile overlay on the cached rootfs), on the host's network
    or, with `netns`, in that network namespace (/run/netns/NAME: see LabNetns)."""

    def __init__(self, rootfs, name, binds_ro=(), boot_timeout=60, netns=None):
        self.rootfs, self.name, self.binds_ro, self.boot_timeout = Path(rootfs), name, list(binds_ro), boot_timeout
        self.netns = netns
        self.proc = None
        self.leader = None
        self.log_path = None

    def __enter__(self):
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc):
        self.stop()

    def start(self):
        argv = ["systemd-nspawn", "-D", str(self.rootfs), "--boot", "--register=no", "--keep-unit",
                "-M", self.name, "--console=passive", "--volatile=overlay"]
        for host, guest in self.binds_ro:
            argv.append("--bind-ro=%s:%s" % (host, guest))
        if self.netns:
            argv.append("--network-namespace-path=/run/netns/%s" % self.netns)
        self.log = tempfile.NamedTemporaryFile(prefix="nspawn-%s-" % self.name, suffix=".log", delete=False)
        self.log_path = self.log.name
        self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=self.log, stderr=subprocess.STDOUT,
                                     start_new_session=True)

        def leader():
            if self.proc.poll() is not None:
                raise AssertionError("systemd-nspawn exited %s:\n%s" % (self.proc.returncode, self.console()))
            p = run(["pgrep", "-P", str(self.proc.pid), "-x", "systemd"], check=False)
            return int(p.stdout.split()[0]) if p.stdout.split() else None

        self.leader = wait_for(leader, 20, what="the container's systemd")

        def booted():
            state = self.sh("systemctl is-system-running", check=False, timeout=10).stdout.strip()
            return state in ("running", "degraded")

        wait_for(booted, self.boot_timeout, interval=0.3, what="the container to boot")

    def console(self):
        try:
            return Path(self.log_path).read_text(errors="replace")[-4000:]
        except (OSError, TypeError):
            return ""

    def stop(self, timeout=20):
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    # -- inside the container
    def exec(self, argv, timeout=60, check=True, input=None):
        return run(["nsenter", "-t", str(self.leader), "-a", "env", "-i", CONTAINER_PATH, "LANG=C.UTF-8"]
                   + list(argv), timeout=timeout, check=check, input=input)

    def sh(self, script, timeout=60, check=True):
        return self.exec(["sh", "-c", script], timeout=timeout, check=check)

    def systemctl(self, *args, timeout=60, check=True):
        return self.exec(["systemctl"] + list(args), timeout=timeout, check=check)

    def show(self, unit, prop):
        return self.systemctl("show", "-P", prop, unit).stdout.strip()

    def path(self, guest_path):
        """The container's file GUEST_PATH as seen from the host."""
        return Path("/proc/%d/root" % self.leader) / str(guest_path).lstrip("/")

    def write(self, guest_path, data, mode=0o644):
        """Write a file in the container as root (no user namespace: host root is the container's root)."""
        if isinstance(data, str):
            data = data.encode()
        target = self.path(guest_path)
        target.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(str(target), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
        try:
            os.fchmod(fd, mode)
            os.write(fd, data)
        finally:
            os.close(fd)


class LabNetns:
    """A network namespace of its own for a container, joined to a simulated lab's bridge
    (tests.lab) at ADDRESS (169.254.X.N/24): the container reaches the lab's devices and node
    server, and its ports (8093) are its own. Removed on exit (the veth pair goes with it)."""

    def __init__(self, lab, name, host_number=5):
        self.lab, self.name = lab, name
        self.address = "%s.%d" % (lab.subnet, host_number)
        self.veth = "v" + name[-13:]

    def __enter__(self):
        bridge = self.lab._manifest["bridge"]
        self.__exit__()
        run(["ip", "netns", "add", self.name])
        try:
            run(["ip", "link", "add", self.veth, "type", "veth", "peer", "name", "eth0", "netns", self.name])
            run(["ip", "link", "set", self.veth, "master", bridge, "up"])
            run(["ip", "-n", self.name, "-batch", "-"],
                input="link set lo up\naddr add %s/24 dev eth0\nlink set eth0 up\n" % self.address)
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc):
        if self.name in run(["ip", "netns", "list"]).stdout.split():
            run(["ip", "netns", "del", self.name], check=False)
        run(["ip", "link", "del", self.veth], check=False)
