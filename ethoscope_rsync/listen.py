"""The status service's listening socket: inherited from systemd (socket activation) or bound.

``ListenStream=8093`` hands over a dual-stack IPv6 socket, ``ListenStream=127.0.0.1:8093`` an IPv4
one: :func:`activated_socket` adopts fd 3 whatever its family, and only when ``LISTEN_PID`` names
this process. Otherwise :func:`bind_socket` binds ``--listen`` and fails with one clear line.
"""
from __future__ import annotations

import errno
import os
import socket

DEFAULT_LISTEN = "0.0.0.0:8093"
SD_LISTEN_FDS_START = 3


class ServeError(Exception):
    """Cannot listen (bad address, port in use, bad inherited socket); exit code 2."""


def parse_listen(listen: str | None) -> tuple:
    """``"ADDR:PORT"``, ``"[::]:PORT"`` or ``"PORT"`` → ``(host, port)``."""
    text = (listen or DEFAULT_LISTEN).strip()
    if text.isdigit():
        host, port = "0.0.0.0", text
    elif text.startswith("["):
        host, sep, port = text[1:].partition("]:")
        if not sep:
            raise ServeError("invalid listen address %r (use [ADDR]:PORT for IPv6)" % text)
    else:
        host, sep, port = text.rpartition(":")
        if not sep or ":" in host:
            raise ServeError("invalid listen address %r (use ADDR:PORT or [ADDR]:PORT)" % text)
    try:
        port_n = int(port)
        if not 0 <= port_n <= 65535:
            raise ValueError
    except ValueError:
        raise ServeError("invalid port in listen address %r" % text) from None
    return host or "0.0.0.0", port_n


def bind_socket(listen: str | None) -> socket.socket:
    """Create, bind and listen on a TCP socket for ``listen``; ServeError with one clear line."""
    host, port = parse_listen(listen)
    try:
        infos = socket.getaddrinfo(host, port, socket.AF_UNSPEC, socket.SOCK_STREAM, 0,
                                   socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise ServeError("cannot resolve listen address %s: %s" % (host, exc.strerror)) from None
    family, stype, proto, _, addr = infos[0]
    sock = socket.socket(family, stype, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6 and host in ("::", "::0"):
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        sock.bind(addr)
        sock.listen(socket.SOMAXCONN)
    except OSError as exc:
        sock.close()
        shown = "[%s]:%d" % (host, port) if ":" in host else "%s:%d" % (host, port)
        if exc.errno == errno.EADDRINUSE:
            raise ServeError("port already in use: %s (another status service running?)" % shown) from None
        raise ServeError("cannot listen on %s: %s" % (shown, exc.strerror or exc)) from None
    return sock


def activated_socket(environ=os.environ):
    """The socket passed by systemd (fd 3) if it is meant for this process, else None.

    Unsets ``LISTEN_PID``/``LISTEN_FDS``/``LISTEN_FDNAMES`` so neither children nor cheroot see them.
    """
    pid, fds = environ.get("LISTEN_PID"), environ.get("LISTEN_FDS")
    for name in ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"):
        environ.pop(name, None)
    try:
        if pid is None or int(pid) != os.getpid() or int(fds or 0) < 1:
            return None
    except ValueError:
        return None
    try:
        sock = socket.socket(fileno=SD_LISTEN_FDS_START)  # family/type detected from the fd
    except OSError as exc:
        raise ServeError("LISTEN_FDS set but fd 3 is not a socket: %s" % exc) from None
    if sock.type != socket.SOCK_STREAM or sock.family not in (socket.AF_INET, socket.AF_INET6):
        raise ServeError("socket passed by systemd is not a TCP stream socket")
    os.set_inheritable(sock.fileno(), False)
    return sock


def client_address(addr) -> str:
    """Printable peer address; IPv4 clients of a dual-stack socket shown as plain IPv4."""
    a = str(addr or "-")
    if a.lower().startswith("::ffff:") and "." in a:
        return a[7:]
    return a


def format_address(sockname) -> str:
    host, port = sockname[:2]
    return "[%s]:%d" % (host, port) if ":" in host else "%s:%d" % (host, port)
