"""What the package's systemd generator writes, as pure text: the pass's sandbox opened to the
configured destinations, and the node's switch names (see :mod:`ethoscope_rsync.commands.generator`).

The pass runs with ``ProtectSystem=strict``: only ``ReadWritePaths=`` can be written, and the unit
ships with the default destinations. Destinations set elsewhere (``[paths]`` of backup.conf, or the
node's ``ethoscope.conf``, which its web interface edits) are added by a drop-in the generator
writes at boot and at every ``systemctl daemon-reload``.
"""
from __future__ import annotations

import os
import re
from pathlib import Path

from ethoscope_rsync.config.switches import SWITCHES

PASS_UNIT = "ethoscope-backup.service"
VERIFY_UNIT = "ethoscope-backup-verify.service"
DROPIN_NAME = "50-destinations.conf"
SHIPPED = (Path("/ethoscope_data/results"), Path("/ethoscope_data/videos"))   # ReadWritePaths= of the unit
HIDDEN_BY_PROTECT_HOME = ("/home", "/root", "/run/user")                     # ProtectHome=yes
# Folders where an upstream unit file of a switch's name may be (a mask too, in /etc).
UNIT_FOLDERS = ("/etc/systemd/system", "/run/systemd/system", "/usr/local/lib/systemd/system",
                "/usr/lib/systemd/system", "/lib/systemd/system")
_PLAIN = re.compile(r"/[A-Za-z0-9_@%+=:,./-]*")


def covered(path: Path, allowed) -> bool:
    """Whether `path` is one of the folders `allowed`, or below one."""
    text = os.path.normpath(str(path))
    return any(text == os.path.normpath(str(a)) or text.startswith(os.path.normpath(str(a)).rstrip("/") + "/")
               for a in allowed)


def refusal(path: Path) -> str:
    """'' when `path` can be opened to the pass, else why not (one line)."""
    text = str(path)
    if not _PLAIN.fullmatch(text) or "/../" in text + "/" or "//" in text:
        return f"{text!r}: only plain absolute paths (letters, digits, _@%+=:,.-/) can be opened to the pass"
    if covered(path, HIDDEN_BY_PROTECT_HOME):
        return f"{text} is hidden from the pass (ProtectHome=yes): choose a folder outside /home, /root and /run/user"
    return ""


def sandbox_dropins(destinations, source: str) -> dict:
    """{unit: drop-in text} opening the destinations that the shipped unit does not (mount units
    they need waited for); {} when the shipped ones cover them all. Paths refused are left out."""
    extra = [p for p in dict.fromkeys(Path(d) for d in destinations) if not covered(p, SHIPPED) and not refusal(p)]
    if not extra:
        return {}
    head = f"# Written by ethoscope-backup-generator from {source} (and the node's ethoscope.conf).\n"
    paths = " ".join(str(p).replace("%", "%%") for p in extra)
    mounts = f"[Unit]\nRequiresMountsFor={paths}\n"
    return {PASS_UNIT: head + mounts + "[Service]\nReadWritePaths=" + " ".join("-" + str(p).replace("%", "%%")
                                                                               for p in extra) + "\n",
            VERIFY_UNIT: head + mounts}


def switch_fragment(name: str) -> str:
    """The unit file of a switch where no upstream one exists; its behaviour is the package's drop-in."""
    kinds = " and ".join(SWITCHES[name])
    return (f"# Written by ethoscope-backup-generator: no unit file named {name}.service exists, so this\n"
            f"# one stands in; /usr/lib/systemd/system/{name}.service.d/zz-ethoscope-rsync.conf makes it\n"
            f"# the switch of the backups of {kinds} (see ethoscope-backup(8), SWITCHES).\n"
            f"[Unit]\nDescription=Ethoscope backups of {kinds} switched on (ethoscope-rsync)\n")


def parse_paths(value: str) -> tuple:
    """``systemctl show -P ReadWritePaths`` -> the paths (a leading '-' of optional ones dropped)."""
    return tuple(Path(word.lstrip("-+")) for word in value.split() if word.lstrip("-+").startswith("/"))
