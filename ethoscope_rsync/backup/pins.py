"""Who a device is: its host key, and the name and machine id pinned to that key.

The node server, mDNS and the config only *claim* that an address is ETHOSCOPE_004 with some
machine id. ssh checks the device's host key against the one recorded for its name (HostKeyAlias =
the name, trust on first use into our known_hosts); the history pins the machine id to that name
once the device answered with that key (``DeviceHistory.pinned``). So key, name and machine id
stay together: an entry claiming a pinned name with another machine id, or a pinned machine id
under another name, is refused before it is contacted, whatever address it uses. After an SD card
swap the operator forgets the old identity (``ethoscope-backup forget-host``).
"""
from __future__ import annotations

import dataclasses
import os
import re
import stat
import tempfile
from pathlib import Path

from ethoscope_rsync.config.devices import Device
from ethoscope_rsync.state.history import History

_OLD_ALIAS_RE = re.compile(r"(ethoscope_\d{3,4})-[0-9a-f]{32}")


def forget_hint(name: str) -> str:
    return f"if {name}'s SD card was replaced, run: ethoscope-backup forget-host {name}"


def pins(history: History) -> dict:
    """machine id -> name of every pinned device, those retired from the status included."""
    found = dict(history.retired)
    found.update({key: entry.name for key, entry in history.devices.items() if entry.pinned and entry.id == key})
    return found


def identities(history: History) -> dict:
    """machine id -> (name, the address its host key last answered at) of every pinned device."""
    return {key: (name, history.devices[key].address if key in history.devices else "")
            for key, name in pins(history).items()}


def agrees(device, pinned: dict) -> bool:
    """The entry claims a pinned identity, and nothing in its claims contradicts the pins
    (`pinned`: :func:`identities`); an entry without a machine id gets its name's at its contact."""
    owner = pinned.get(device.id, ("", ""))[0] if device.id else ""
    name_of = next((key for key, (name, _) in pinned.items() if name == device.name), "")
    if (device.id and name_of and name_of != device.id) or (owner and owner != device.name):
        return False
    return bool(owner or name_of)


def wins(device, rivals, pinned: dict) -> bool:
    """Of entries claiming one name or machine id, whether `device` is the pinned device's own:
    it agrees with the pins, and each rival either contradicts them (an impostor) or claims the
    same identity at another address than the one that device's key last answered at."""
    if not agrees(device, pinned):
        return False
    key = device.id or next((k for k, (name, _) in pinned.items() if name == device.name), "")
    known = pinned.get(key, ("", ""))[1]
    return all(not agrees(rival, pinned) or (known and device.address == known != rival.address)
               for rival in rivals)


def pinned_id(history: History, name: str) -> str:
    """The machine id pinned to the name `name` ("" when none is)."""
    return next((key for key, pinned in pins(history).items() if pinned == name), "")


def known_identity(device: Device, history: History) -> Device:
    """A [devices] entry (known by name only) gets the machine id pinned at an earlier first contact
    (none after forget-host: its next first contact pins the new one)."""
    return device if device.id else dataclasses.replace(device, id=pinned_id(history, device.name))


def admitted(devices, history: History, known=frozenset()) -> tuple:
    """The identity checks every road to a device makes (a pass, a later discovery in a scheduled
    pass — which leaves out the `known` keys —, the dry run): each device with its pinned identity,
    those whose claims disagree with the pins refused -> (devices, one message per refused device)."""
    return check_claims((d for d in (known_identity(d, history) for d in devices) if d.key not in known), history)


def check_claims(devices, history: History) -> tuple:
    """-> (devices whose claims agree with the pins, one message per refused device)."""
    by_id = pins(history)
    by_name = {name: key for key, name in by_id.items()}
    allowed, refused = [], []
    for device in devices:
        pinned_id = by_name.get(device.name)
        owner = by_id.get(device.id) if device.id else None
        if device.id and pinned_id and pinned_id != device.id:
            refused.append(f"{device.name} at {device.address} claims machine id {device.id}, but {device.name} "
                           f"is {pinned_id} (pinned to its host key at first contact): refused; "
                           + forget_hint(device.name))
        elif owner and owner != device.name:
            refused.append(f"{device.name} at {device.address} claims the machine id {device.id} of "
                           f"{owner}: refused; " + forget_hint(owner))
        else:
            allowed.append(device)
    return tuple(allowed), tuple(refused)


def unpin(history: History, name: str) -> int:
    """Forget which machine id the name `name` has (after an SD card swap). Returns how many."""
    count = 0
    for entry in history.devices.values():
        if entry.name == name and entry.pinned:
            entry.pinned = False
            count += 1
    for key in [key for key, pinned in history.retired.items() if pinned == name]:
        del history.retired[key]
        count += 1
    return count


def _hosts(line: str) -> list:
    return line.split(" ", 1)[0].lower().split(",") if line.strip() and not line.startswith("#") else []


def rewrite_known_hosts(path: Path, lines: list) -> None:
    """Replace `path` with `lines`, keeping its mode, through a new private file beside it
    (mkstemp: a name nobody could plant a link at beforehand), renamed over `path` itself (a
    symbolic link there is replaced, its target never written)."""
    mode = stat.S_IMODE(os.lstat(path).st_mode) & 0o644
    fd, temp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as handle:
            os.fchmod(handle.fileno(), mode)
            handle.writelines(lines)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, path)
    except BaseException:
        os.unlink(temp)
        raise


def add_name_aliases(path: Path) -> int:
    """Host keys recorded under the first version's aliases (``ethoscope_004-<machine id>``) are
    also recorded under the device's name, the alias used now: no device is trusted anew."""
    try:
        lines = path.read_text().splitlines(keepends=True)
    except (FileNotFoundError, UnicodeDecodeError):
        return 0
    names = {host for line in lines for host in _hosts(line)}
    added = []
    for line in lines:
        for host in _hosts(line):
            match = _OLD_ALIAS_RE.fullmatch(host)
            if match and match.group(1) not in names:
                names.add(match.group(1))
                added.append(match.group(1) + " " + line.split(" ", 1)[1])
    if added:
        rewrite_known_hosts(path, lines + [line if line.endswith("\n") else line + "\n" for line in added])
    return len(added)


def remove_host_keys(path: Path, name: str) -> int:
    """Remove every host key recorded for the device `name` (under its name or an old alias)."""
    try:
        lines = path.read_text().splitlines(keepends=True)
    except FileNotFoundError:
        return 0
    alias = name.lower()         # ssh records HostKeyAlias names in lower case
    kept = [line for line in lines if not any(host == alias or host.startswith(alias + "-") for host in _hosts(line))]
    if len(kept) != len(lines):
        rewrite_known_hosts(path, kept)
    return len(lines) - len(kept)
