"""The grammars of the values a person writes: sizes, rates, host:port, ssh algorithm lists, mail
addresses, URLs, absolute paths. One parser per grammar; each raises ValueError with the words a
person needs, and the settings table (settings.py), the command line and the readers all use them."""
from __future__ import annotations

import ipaddress
import re
import urllib.parse
from pathlib import Path
from typing import NamedTuple

_SIZE_UNITS = {"": 1, "B": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
_SIZE_RE = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([BKMGT]?)(?:i?B)?\s*")
_HOST_RE = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9.-]{0,251}[A-Za-z0-9])?")
_ALGORITHMS_RE = re.compile(r"[A-Za-z0-9@.+-]+(,[A-Za-z0-9@.+-]+)*")
# user@host: no spaces, quotes, brackets or commas; never starting with "-" (sendmail's argv)
_ADDRESS_RE = re.compile(r"[A-Za-z0-9_+=.][A-Za-z0-9_+=.-]*@[A-Za-z0-9][A-Za-z0-9.-]*")


def parse_size(text: str) -> int:
    """'1G', '500M', '0', '2048' (bytes) -> bytes."""
    match = _SIZE_RE.fullmatch(text.upper())
    if not match:
        raise ValueError(f"not a size: {text!r} (use e.g. 500M, 2G)")
    return int(float(match.group(1)) * _SIZE_UNITS[match.group(2)])


def parse_rate(text: str) -> int:
    """rsync-style rate '10M', '800K', '1500' (KiB/s when unitless) -> KiB/s; '' -> 0 (no limit).
    A rate is per second already: '10M/s' and '10 MB/s' are refused with the form to use."""
    if not text.strip():
        return 0
    if re.fullmatch(r"\s*\d+\s*", text):
        return int(text)
    if "/" in text:
        raise ValueError(f"not a rate: {text!r} (a rate is per second already: write e.g. 10M or 800K)")
    try:
        return max(1, parse_size(text) // 1024)
    except ValueError:
        raise ValueError(f"not a rate: {text!r} (KiB/s without a unit, or e.g. 800K, 10M)") from None


def parse_ciphers(text: str) -> str:
    """An ssh cipher list ('aes128-gcm@openssh.com,chacha20-poly1305@openssh.com') or ''."""
    text = text.strip()
    if text and not _ALGORITHMS_RE.fullmatch(text):
        raise ValueError(f"not an ssh cipher list: {text!r}")
    return text


def parse_kex(text: str) -> str:
    """An ssh KexAlgorithms value: a list, optionally after ^ (first), + (append) or - (remove); or ''."""
    text = text.strip()
    if text and not _ALGORITHMS_RE.fullmatch(text.lstrip("^+-") if text[0] in "^+-" else text):
        raise ValueError(f"not an ssh key exchange list: {text!r}")
    return text


def parse_addresses(text: str) -> tuple[str, ...]:
    """'a@lab.org, b@lab.org' -> ('a@lab.org', 'b@lab.org'); '' -> ()."""
    addresses = tuple(a.strip() for a in text.split(",") if a.strip())
    for address in addresses:
        if len(address) > 254 or not _ADDRESS_RE.fullmatch(address):
            raise ValueError(f"not a mail address: {address!r} (use user@host, comma-separated)")
    return addresses


def parse_url(text: str) -> str:
    """An http:// or https:// URL with a host, or '' (none)."""
    text = text.strip()
    if not text:
        return ""
    parsed = urllib.parse.urlsplit(text)
    if (parsed.scheme not in ("http", "https") or not parsed.hostname or len(text) > 2000
            or any(c.isspace() or ord(c) < 32 or ord(c) == 127 for c in text)):
        raise ValueError(f"not an http:// or https:// URL: {text[:80]!r}")
    return text


def parse_absolute(text: str) -> Path:
    """An absolute path."""
    if not text.startswith("/") or "\0" in text:
        raise ValueError(f"must be an absolute path, not {text!r}")
    return Path(text)


class Endpoint(NamedTuple):
    """A host (name, IPv4 or IPv6 address) and a TCP port."""
    host: str
    port: int

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


def _host(text: str) -> str:
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        if _HOST_RE.fullmatch(text) and ".." not in text:
            return text
    raise ValueError(f"not a host name or address: {text[:60]!r}")


def parse_endpoint(text: str, default_port: int | None = None, any_host: str = "") -> Endpoint:
    """'host', 'host:port', '[v6]:port', 'v4:port'; with `any_host` also 'PORT' alone (that host).
    A missing port is `default_port` (an error when None)."""
    text = text.strip()
    if any_host and text.isdigit():
        host, port = any_host, text
    elif text.startswith("["):
        host, sep, port = text[1:].partition("]")
        if port and not port.startswith(":"):
            raise ValueError(f"not HOST:PORT: {text[:60]!r} (an IPv6 address is written [ADDR]:PORT)")
        port = port[1:]
        if not sep or ":" not in host:
            raise ValueError(f"not HOST:PORT: {text[:60]!r} (an IPv6 address is written [ADDR]:PORT)")
    elif text.count(":") > 1:
        raise ValueError(f"not HOST:PORT: {text[:60]!r} (an IPv6 address is written [ADDR]:PORT)")
    else:
        host, _, port = text.partition(":")
    host = _host(host) if host or not any_host else any_host
    if not port:
        if default_port is None:
            raise ValueError(f"not HOST:PORT: {text[:60]!r} (the port is missing)")
        return Endpoint(host, default_port)
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"not a port: {port[:10]!r} in {text[:60]!r} (1 to 65535)")
    return Endpoint(host, int(port))
