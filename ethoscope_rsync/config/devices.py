"""Validated device records and the ``-e`` selection.

Everything that reaches a path or a command line (a device's name, machine id and address)
comes from the network or a config file, so it is checked here, once, before any use.
"""
from __future__ import annotations

import dataclasses
import ipaddress
import re

NAME_RE = re.compile(r"ETHOSCOPE_(?:[0-9]{3}|[1-9][0-9]{3})")    # one name a number: no ETHOSCOPE_0042
ID_RE = re.compile(r"[0-9a-f]{32}")
SCOPE_RE = re.compile(r"[A-Za-z0-9_.-]{1,15}")       # an interface name or number
HOSTNAME_RE = re.compile(r"(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
                         r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*")
UNUSED_NAME = "ETHOSCOPE_000"


class DeviceError(ValueError):
    """A device record that must not be used (bad name, id or address)."""


@dataclasses.dataclass(frozen=True)
class Device:
    name: str
    address: str
    id: str = ""
    source: str = "node"

    @property
    def key(self) -> str:
        """Key in status.json: the machine id, or the name for a static device without one."""
        return self.id or self.name

    @property
    def number(self) -> int:
        return int(self.name.split("_", 1)[1])

    @property
    def ssh_host(self) -> str:
        """Host part for ssh/rsync: IPv6 literals in brackets for rsync's user@[addr]:path."""
        return f"[{self.address}]" if ":" in self.address else self.address

    @property
    def host_key_alias(self) -> str:
        """known_hosts entry name: the device's name, stable across DHCP address changes. The host
        key is the device's identity; its machine id is pinned to its name (so to its key) in the
        history at first contact (see runner.check_claims)."""
        return self.name


def check_name(name: object) -> str:
    if not isinstance(name, str) or not NAME_RE.fullmatch(name):
        raise DeviceError(f"invalid device name {str(name)[:40]!r} (expected ETHOSCOPE_NNN: three digits, "
                          f"four from 1000, so that each device number has one name)")
    return name


def check_id(machine_id: object) -> str:
    if not isinstance(machine_id, str) or not ID_RE.fullmatch(machine_id):
        raise DeviceError(f"invalid machine id {str(machine_id)[:40]!r} (expected 32 hex digits)")
    return machine_id


def check_address(address: object, allow_hostname: bool = False) -> str:
    if not isinstance(address, str) or not address:
        raise DeviceError(f"invalid address {str(address)[:40]!r}")
    if "%" in address and not SCOPE_RE.fullmatch(address.partition("%")[2]):
        raise DeviceError(f"invalid address {address[:40]!r} (bad IPv6 scope)")
    try:
        parsed = ipaddress.ip_address(address)
    except ValueError:
        if allow_hostname and HOSTNAME_RE.fullmatch(address):
            return address
        raise DeviceError(f"invalid address {address[:40]!r}") from None
    if parsed.is_multicast or parsed.is_unspecified:
        raise DeviceError(f"invalid address {address!r} (multicast or unspecified)")
    return str(parsed)


def static_device(name: str, address: str) -> Device:
    """A device listed in the config's [devices] section: NAME = ADDRESS."""
    return Device(name=check_name(name), address=check_address(str(address).strip(), allow_hostname=True),
                  source="config")


def node_device(entry: object) -> Device:
    """One value of the node server's /devices answer, validated."""
    if not isinstance(entry, dict):
        raise DeviceError("entry is not an object")
    return Device(name=check_name(entry.get("name")), id=check_id(entry.get("id")),
                  address=check_address(entry.get("ip")), source="node")


def parse_selection(text: str) -> tuple:
    """'-e' argument -> tuple of tokens: ints for numbers/names, str for machine ids."""
    tokens: list = []
    for raw in text.split(","):
        item = raw.strip()
        if not item:
            continue
        if re.fullmatch(r"[0-9]{1,4}", item):
            tokens.append(int(item))
        elif NAME_RE.fullmatch(item.upper()):
            tokens.append(int(item.split("_", 1)[1]))
        elif ID_RE.fullmatch(item.lower()):
            tokens.append(item.lower())
        else:
            raise DeviceError(f"-e: {item!r} is not a device number, ETHOSCOPE_NNN name or machine id")
    if not tokens:
        raise DeviceError("-e: no device given")
    return tuple(tokens)


def selected(device: Device, selection: tuple) -> bool:
    if not selection:
        return True
    return any((isinstance(token, int) and token == device.number) or token == device.id
               for token in selection)
