"""The second copy's tests on the simulated lab: a node with [offsite], a NAS (a network
namespace with its own sshd, as the devices have), restic run by hand to look into a repository."""
import hashlib
import os
import pwd
import subprocess
from pathlib import Path

from tests.integration.backup_node import PYTHON, ROOT, Node
from tests.polling import wait_for

DEVICE_USER = "ethoscope"


class OffsiteNode(Node):
    """A node (destinations, state, config) whose [offsite] sends to `repository`."""

    def __init__(self, lab, base: Path, repository: str, offsite: str = "", extra: str = ""):
        self.password = base / "restic-password"
        base.mkdir(parents=True, exist_ok=True)
        self.password.write_text("correct horse battery staple\n")
        self.password.chmod(0o600)
        self.repository = repository
        super().__init__(lab, base, extra=extra + f"[offsite]\nrepository = {repository}\n"
                                                  f"password_file = {self.password}\n" + offsite)

    def offsite(self, *args, timeout=300):
        return subprocess.run([PYTHON, "-m", "ethoscope_rsync", "offsite", "-c", str(self.conf), *args], cwd=ROOT,
                              capture_output=True, text=True, timeout=timeout)

    def start_offsite(self, *args):
        return subprocess.Popen([PYTHON, "-m", "ethoscope_rsync", "offsite", "-c", str(self.conf), *args], cwd=ROOT,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)

    def command(self, name, *args, timeout=300):
        return subprocess.run([PYTHON, "-m", "ethoscope_rsync", name, "-c", str(self.conf), *args], cwd=ROOT,
                              capture_output=True, text=True, timeout=timeout)

    def restic(self, *args, sftp=None, timeout=300):
        """restic itself, as an operator would run it (the restore guide's commands)."""
        env = dict(os.environ, RESTIC_REPOSITORY=self.repository, RESTIC_PASSWORD_FILE=str(self.password))
        options = ["-o", "sftp.command=" + sftp] if sftp else []
        return subprocess.run(["restic", "--no-cache", *options, *args], env=env, capture_output=True, text=True,
                              timeout=timeout)


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def archive_state(node: Node) -> dict:
    """Every file under the destinations (hidden ones included): size, mtime, inode, content digest."""
    found = {}
    for root in (node.results, node.videos):
        for path in sorted(root.rglob("*")):
            if path.is_file() and not path.is_symlink():
                info = path.stat()
                found[str(path)] = (info.st_size, info.st_mtime_ns, info.st_ino, digest(path))
    return found


class Nas:
    """A NAS: a lab device (its own network namespace and sshd) whose /ethoscope_data/nas holds the
    repository; it accepts the node's key (the device lab's)."""

    def __init__(self, nas_lab, node_lab):
        self.lab, self.device = nas_lab, nas_lab.devices[0]
        authorized = nas_lab.base_dir / "keys" / "authorized_keys"
        authorized.write_text(authorized.read_text() + Path(str(node_lab.key_path) + ".pub").read_text())
        self.folder = self.device.data_root / "nas"
        self.folder.mkdir(exist_ok=True)
        account = pwd.getpwnam(DEVICE_USER)
        os.chown(self.folder, account.pw_uid, account.pw_gid)
        self.repository = f"sftp:{DEVICE_USER}@{self.device.ip}:/ethoscope_data/nas/repo"

    def sftp_command(self, node):
        return (f"ssh -i {node.lab.key_path} -o BatchMode=yes -o UserKnownHostsFile="
                f"{node.state / 'offsite_known_hosts'} -l {DEVICE_USER} {self.device.ip} -s sftp")


def locks(repository_folder: Path) -> list:
    return sorted(p.name for p in (repository_folder / "locks").iterdir())


def sending_then(process, node, action, repository_folder=None):
    """Once the run records itself running and restic is at work (its process is there; with
    `repository_folder`, its lock taken), `action`; -> the run's (stdout, stderr) when it has ended."""
    def sending():
        state = node.state / "offsite.json"
        if not state.exists() or '"outcome":"running"' not in state.read_text():
            return False
        if repository_folder is not None and not locks(repository_folder):
            return False
        return subprocess.run(["pgrep", "-P", str(process.pid), "-x", "restic"], capture_output=True).returncode == 0
    wait_for(sending, 60, what="the second copy to be sending")
    action()
    return process.communicate(timeout=240)
