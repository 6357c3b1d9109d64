"""Per-device sshd (host key, config, start/stop) and the faults injected on devices."""
import subprocess
import time

from .system import DEVICE_USER, _kill_wait, _netns_pids, _rate_bits, _run, _wait_tcp


class DeviceOps:
    """``Lab`` methods acting on one device: its sshd, its link, its host key."""

    def _new_host_key(self, d):
        for p in (d.host_key, d.host_key_pub):
            if p.exists():
                p.unlink()
        _run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", d.name, "-f", str(d.host_key)])

    @staticmethod
    def _sshd_config(d, authorized, log_level="INFO"):
        return "\n".join([
            "Port 22",
            "ListenAddress %s" % d.ip,
            "HostKey %s" % d.host_key,
            "PidFile %s" % (d.dir / "sshd.pid"),
            "AuthorizedKeysFile %s" % authorized,
            "StrictModes no",
            "UsePAM no",
            "PasswordAuthentication no",
            "KbdInteractiveAuthentication no",
            "PubkeyAuthentication yes",
            "AllowUsers %s" % DEVICE_USER,
            "UseDNS no",
            "MaxStartups 100:30:200",
            "MaxSessions 64",
            "PrintMotd no",
            "Subsystem sftp internal-sftp",
            "LogLevel %s" % log_level,             # DEBUG1 logs each connection's cipher ("kex: ... cipher:")
            "",
        ])

    def _start_sshd(self, d):
        # each device sees its own data tree and its own /etc/machine-id (its id), as a real one does
        machine_id = d.dir / "machine-id"       # written at lab up; set_machine_id() changes it
        # programs in the device's own bin/ (see override_programs) come first on its PATH
        binds = ["%s=/usr/local/bin" % (d.dir / "bin")] if (d.dir / "bin").is_dir() else []
        if d.index in self.without_aes:     # a CPU without AES instructions (a Raspberry Pi 3 or 4)
            with open("/proc/cpuinfo") as real:
                (d.dir / "cpuinfo").write_text("".join(_without_aes(line) for line in real))
            binds.append("%s=/proc/cpuinfo" % (d.dir / "cpuinfo"))
        script = ('mount --bind "$1" /ethoscope_data && mount --bind "$4" /etc/machine-id && '
                  'config=$2 && log=$3 && shift 4 && '
                  'for bind in "$@"; do mount --bind "${bind%%=*}" "${bind#*=}" || exit 1; done && '
                  'exec /usr/sbin/sshd -D -f "$config" -E "$log"')
        argv = ["ip", "netns", "exec", d.netns, "unshare", "--mount", "--pid", "--fork", "--kill-child",
                "--propagation", "private", "--",
                "sh", "-c", script, "sh", str(d.data_root), str(d.sshd_config), str(d.sshd_log),
                str(machine_id)] + binds
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                stderr=open(d.dir / "sshd.stderr", "ab"), start_new_session=True)
        self._procs[("sshd", d.index)] = proc
        return proc

    def _stop_sshd(self, d):
        proc = self._procs.pop(("sshd", d.index), None)
        pids = _netns_pids(d.netns)
        _kill_wait(pids + ([proc.pid] if proc else []))
        if proc:
            proc.wait(5)

    # ------------------------------------------------------------------ faults
    def cut_link(self, device):
        _run(["ip", "link", "set", device.veth, "down"], check=False)
        _run(["ip", "-n", device.netns, "link", "set", "eth0", "down"], check=False)

    def restore_link(self, device):
        _run(["ip", "-n", device.netns, "link", "set", "eth0", "up"])
        _run(["ip", "link", "set", device.veth, "up"])

    def rate_limit(self, device, rate="40mbit", burst=None, latency="400ms"):
        if burst is None:  # ~10 ms worth of data, at least 32 kbit
            burst = "%dkbit" % max(32, int(_rate_bits(rate) / 100 / 1000))
        args = ["root", "tbf", "rate", rate, "burst", burst, "latency", latency]
        _run(["tc", "qdisc", "replace", "dev", device.veth] + args)
        _run(["ip", "netns", "exec", device.netns, "tc", "qdisc", "replace", "dev", "eth0"] + args)

    def clear_rate_limit(self, device):
        _run(["tc", "qdisc", "del", "dev", device.veth, "root"], check=False)
        _run(["ip", "netns", "exec", device.netns, "tc", "qdisc", "del", "dev", "eth0", "root"], check=False)

    def regenerate_host_key(self, device):
        self._stop_sshd(device)
        self._new_host_key(device)
        self._start_sshd(device)
        if not _wait_tcp(device.ip, 22, time.monotonic() + 15):
            raise RuntimeError("sshd of %s did not restart" % device.name)
        self._write_summary()

    def set_machine_id(self, device, machine_id):
        """What the device's /etc/machine-id says from now on (rewritten in place: the bind mount
        of the running sshd sees it)."""
        with open(device.dir / "machine-id", "r+") as f:
            f.truncate(0)
            f.write(machine_id + "\n")

    def override_programs(self, device, programs):
        """Programs found before the system's on the device's PATH ({name: script text}), as a
        hostile device's own ``python3`` or ``rsync``; the device's sshd restarts (same host key)."""
        folder = device.dir / "bin"
        folder.mkdir(exist_ok=True)
        for name, text in programs.items():
            (folder / name).write_text(text)
            (folder / name).chmod(0o755)
        self._stop_sshd(device)
        self._start_sshd(device)
        if not _wait_tcp(device.ip, 22, time.monotonic() + 15):
            raise RuntimeError("sshd of %s did not restart" % device.name)

    def stop_device(self, device):
        """The device vanishes: its sshd (and every session) is killed and its link goes down."""
        self._stop_sshd(device)
        self.cut_link(device)

    def start_device(self, device):
        """Undo stop_device(): link up, sshd started again (same host key)."""
        self.restore_link(device)
        if not _netns_pids(device.netns):
            self._start_sshd(device)
        if not _wait_tcp(device.ip, 22, time.monotonic() + 15):
            raise RuntimeError("sshd of %s did not restart" % device.name)


def _without_aes(line):
    """A /proc/cpuinfo line with the AES instructions taken out of its flags (x86) or Features (ARM)."""
    name, colon, values = line.partition(":")
    if not colon or name.strip().lower() not in ("flags", "features"):
        return line
    return "%s:%s\n" % (name, " ".join([""] + [v for v in values.split() if v.lower() != "aes"]))
