"""Find the ethoscopes to back up: node server, static config entries, mDNS as a bounded fallback
(``[node] mdns_timeout`` seconds in all, at most MAX_DEVICES names).

``parse_node_devices`` is pure (text in, devices and warnings out) so every hostile answer of a
node server is tested without a network. Fetching and mDNS browsing are thin edges.
"""
from __future__ import annotations

import dataclasses
import http.client as http_client
import json
import queue
import socket
import threading
import time

from ethoscope_rsync.config.record import Config
from ethoscope_rsync.config.syntax import Endpoint
from ethoscope_rsync.backup.pins import wins
from ethoscope_rsync.config.devices import (NAME_RE, UNUSED_NAME, Device, DeviceError, check_address,
                                            check_id, check_name, node_device, selected)


SKIPPED_STATUSES = ("offline", "not_in_use")
MAX_ANSWER = 16 << 20
MAX_DEVICES = 1000              # a lab has 10-100; more is a broken or hostile node server
MDNS_SERVICE = "_ethoscope._tcp.local."


class DiscoveryError(Exception):
    """No way to know the devices: node server unreachable or lying, and no fallback found any."""


@dataclasses.dataclass(frozen=True)
class Discovered:
    devices: tuple
    warnings: tuple
    source: str
    missing: tuple = ()      # -e selections that matched no discovered device
    held: tuple = ()         # why selected devices are held back (conflicting claims): not backed up


def parse_node_devices(text: str) -> tuple:
    """The node server's /devices body -> (devices, warnings). Raises DiscoveryError if unusable."""
    try:
        data = json.loads(text)
    except ValueError as error:
        raise DiscoveryError("node server answered something that is not JSON "
                             f"({getattr(error, 'msg', error)})") from None
    except RecursionError:
        raise DiscoveryError("node server answered JSON nested too deeply") from None
    if not isinstance(data, dict):
        raise DiscoveryError("node server answered JSON that is not an object of devices")
    devices: list = []
    warnings: list = []
    for key, entry in data.items():
        if not isinstance(entry, dict):
            warnings.append(f"skipping entry {str(key)[:40]!r}: not an object")
            continue
        status = entry.get("status")
        if status in SKIPPED_STATUSES or entry.get("name") == UNUSED_NAME:
            continue
        if not entry.get("id") or not entry.get("name") or not entry.get("ip"):
            continue
        try:
            device = node_device(entry)
        except DeviceError as error:
            warnings.append(f"skipping entry {str(key)[:40]!r}: {error}")
            continue
        if len(devices) == MAX_DEVICES:
            warnings.append(f"node server lists more than {MAX_DEVICES} devices: only the first {MAX_DEVICES} "
                            f"are backed up")
            break
        devices.append(device)
    return tuple(devices), tuple(warnings)


def fetch_node_devices(server: Endpoint, timeout: float) -> str:
    """GET http://SERVER/devices: the whole answer within `timeout` seconds and MAX_ANSWER bytes,
    no redirects followed. Raises DiscoveryError."""
    connection = http_client.HTTPConnection(server.host, server.port, timeout=timeout)
    # A deadline for the whole exchange: a server that sends a byte every few seconds must not hold
    # the pass, and socket timeouts only bound each read.
    watchdog = threading.Timer(timeout, _shut, (connection,))
    watchdog.start()
    try:
        connection.request("GET", "/devices", headers={"Accept": "application/json"})
        answer = connection.getresponse()
        if answer.status != 200:
            raise DiscoveryError(f"node server {server}: HTTP {answer.status} {answer.reason[:60]}")
        body = answer.read(MAX_ANSWER + 1)
    except (OSError, http_client.HTTPException, ValueError) as error:
        if not watchdog.is_alive():
            raise DiscoveryError(f"node server {server}: no complete answer within {timeout:g}s") from None
        raise DiscoveryError(f"node server {server} unreachable or broken: {error or type(error).__name__}") from None
    finally:
        watchdog.cancel()
        connection.close()
    if len(body) > MAX_ANSWER:
        raise DiscoveryError(f"node server {server}: answer larger than {MAX_ANSWER >> 20} MB")
    return body.decode("utf-8", "replace")


def _shut(connection: http_client.HTTPConnection) -> None:
    if connection.sock is not None:
        try:
            connection.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


def mdns_device(name: str, addresses: list, properties: dict) -> Device:
    """A resolved mDNS service -> Device (validated like every other source)."""
    props = {(k.decode("utf-8", "replace") if isinstance(k, bytes) else str(k)).lower():
             (v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v))
             for k, v in properties.items() if v is not None}
    label = props.get("machine_name") or props.get("name") or name.split(".", 1)[0]
    match = NAME_RE.fullmatch(label)
    if not match:
        raise DeviceError(f"mDNS service {name[:60]!r}: {label[:40]!r} is not an ETHOSCOPE_NNN name")
    machine_id = props.get("machine_id") or props.get("id") or ""
    for address in addresses:
        try:
            return Device(name=check_name(match.group(0)), address=check_address(address),
                          id=check_id(machine_id) if machine_id else "", source="mdns")
        except DeviceError:
            continue
    raise DeviceError(f"mDNS service {name[:60]!r} has no usable address")


def browse_mdns(timeout: float) -> tuple:
    """Look for devices on mDNS (_ethoscope._tcp.local.) for `timeout` seconds in all -> (devices,
    warnings). Names are resolved as they are announced, each within a second and all by the
    deadline; the first MAX_DEVICES names only: the LAN, not us, decides how many announce."""
    if timeout <= 0:
        return (), ()
    try:
        from zeroconf import ServiceBrowser, ServiceListener, Zeroconf
    except ImportError:
        return (), ("mDNS fallback unavailable: python3-zeroconf is not installed",)
    deadline = time.monotonic() + timeout
    announced: queue.Queue = queue.Queue()
    seen: set = set()
    lock = threading.Lock()
    over: list = []

    class Listener(ServiceListener):            # called by zeroconf's own thread
        def add_service(self, zc, type_, name):
            with lock:
                if name in seen or over:
                    return
                if len(seen) == MAX_DEVICES:
                    over.append(name)
                    return
                seen.add(name)
            announced.put(name)

        def update_service(self, zc, type_, name):
            pass

        def remove_service(self, zc, type_, name):
            pass

    devices: list = []
    warnings: list = []
    try:
        zeroconf = Zeroconf()
    except OSError as error:
        return (), (f"mDNS unavailable: {error}",)
    try:
        ServiceBrowser(zeroconf, MDNS_SERVICE, Listener())
        while (left := deadline - time.monotonic()) > 0:
            try:
                name = announced.get(timeout=left)
            except queue.Empty:
                break
            left = deadline - time.monotonic()
            if left <= 0:
                announced.put(name)
                break
            info = zeroconf.get_service_info(MDNS_SERVICE, name, timeout=max(1, int(min(1.0, left) * 1000)))
            if info is None:
                continue
            try:
                devices.append(mdns_device(name, info.parsed_addresses(), info.properties))
            except DeviceError as error:
                warnings.append(f"skipping {error}")
    finally:
        zeroconf.close()
    if over:
        warnings.append(f"more than {MAX_DEVICES} mDNS services announced: only the first {MAX_DEVICES} "
                        f"are considered")
    if announced.qsize():
        warnings.append(f"{announced.qsize()} mDNS service(s) not resolved within {timeout:g}s")
    return tuple(devices), tuple(warnings)


def merge(*groups: tuple, pinned: dict | None = None) -> tuple:
    """Devices from several sources -> (devices, warnings, held). Entries that claim one name or one
    machine id are one device when they agree (same name and address; the machine id of the one
    that has it); otherwise the pins decide (`pinned`: machine id -> (name, last address), see
    pins.identities): the pinned device's own entry is backed up, the others are held back and
    named as impostors. Without a pin none of them is: which one is the impostor is not for a list
    to decide."""
    pinned = pinned or {}
    entries = [device for group in groups for device in group]
    merged: list = []
    warnings: list = []
    held: set = set()
    winners: set = set()
    for device in entries:
        same = next((i for i, d in enumerate(merged) if d.name == device.name and d.address == device.address
                     and (not d.id or not device.id or d.id == device.id)), None)
        if same is not None:
            merged[same] = merged[same] if merged[same].id else dataclasses.replace(device, source=merged[same].source)
            continue
        merged.append(device)
    rivals_of = {id(device): [d for d in merged if d is not device and
                              (d.name == device.name or device.id and d.id == device.id)] for device in merged}
    for device in merged:
        rivals = rivals_of[id(device)]
        if rivals and wins(device, rivals, pinned):
            names = ", ".join(f"{d.name} at {d.address} ({d.source})" for d in rivals)
            warnings.append(f"holding back entries that claim the name or machine id of {device.name} "
                            f"(pinned to its host key), backed up at {device.address}: impostor(s) {names}")
            winners.add(id(device))
    for device in merged:
        rivals = rivals_of[id(device)]
        if rivals and id(device) not in winners:
            held.add(id(device))
            if not any(id(r) in held or id(r) in winners for r in rivals):
                names = ", ".join(f"{d.name} at {d.address} ({d.source})" for d in [device, *rivals])
                warnings.append(f"holding back entries that claim the same name or machine id: {names}")
    return (tuple(d for d in merged if id(d) not in held), tuple(warnings),
            tuple(d for d in merged if id(d) in held))


def discover(config: Config, pinned: dict | None = None) -> Discovered:
    """All devices to back up this pass, filtered by -e (`pinned`: see merge). Raises DiscoveryError."""
    statics, warnings, sources = config.devices, [], []
    found = ()
    if not config.node.server and not statics:      # -i "": no node server and no mDNS, as man 8 says
        raise DiscoveryError('no node server configured ([node] server is empty, or -i ""), and no [devices] '
                             "entries: nothing to back up (mDNS is only the fallback of a node server that does "
                             "not answer); set [node] server, or list the devices under [devices]")
    if config.node.server:
        try:
            found, node_warnings = parse_node_devices(
                fetch_node_devices(config.node.server, config.node.discovery_timeout))
            warnings += node_warnings
            sources.append("node server")
        except DiscoveryError as error:
            warnings.append(str(error))
            found, mdns_warnings = browse_mdns(config.node.mdns_timeout)
            warnings += mdns_warnings
            if found:
                sources.append("mDNS")
            elif not statics:
                fallback = ("no device found by mDNS" if config.node.mdns_timeout > 0
                            else "the mDNS fallback is off ([node] mdns_timeout = 0)")
                raise DiscoveryError(f"{error}; {fallback} and none in [devices]") from None
    if statics:
        sources.append("config")
    every, conflicts, held = merge(statics, found, pinned=pinned)
    warnings += conflicts
    devices = tuple(d for d in every if selected(d, config.selection))
    missing = tuple(token for token in config.selection if not any(selected(d, (token,)) for d in every + held))
    held_back = tuple(f"{d.name} at {d.address} held back (another entry claims its name or machine id)"
                      for d in held if selected(d, config.selection))
    return Discovered(devices, tuple(warnings), " + ".join(sources) or "nothing", missing, held_back)
