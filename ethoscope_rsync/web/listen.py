"""The status service's listening socket: inherited from systemd (socket activation) or bound.

``ListenStream=8093`` hands over a dual-stack IPv6 socket, ``ListenStream=127.0.0.1:8093`` an IPv4
one, several ``ListenStream=`` lines several sockets: :func:`activated_sockets` adopts them
whatever their family, and only when ``LISTEN_PID`` names this process. Otherwise
:func:`bind_socket` binds ``--listen`` and fails with one clear line.
"""
from __future__ import annotations

import errno
import os
import socket

import systemd.daemon

from ethoscope_rsync.config.settings import BY_NAME
from ethoscope_rsync.config.syntax import Endpoint


class ServeError(Exception):
    """Cannot listen (bad address, port in use, bad inherited socket); exit code 2."""


def parse_listen(listen: Endpoint | str | None) -> Endpoint:
    """``"ADDR:PORT"``, ``"[::]:PORT"`` or ``"PORT"`` (or a parsed Endpoint) → ``Endpoint``; ServeError."""
    if isinstance(listen, Endpoint):
        return listen
    try:
        return BY_NAME[("status", "listen")].parse(listen) if listen else BY_NAME[("status", "listen")].value
    except ValueError as error:
        raise ServeError(f"invalid listen address: {error}") from None


def bind_socket(listen: Endpoint | str | None) -> socket.socket:
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


def activated_sockets() -> list:
    """The listening sockets systemd passed to this process (socket activation), else ``[]``.

    ``systemd.daemon.listen_fds`` honours ``LISTEN_PID`` (sockets meant for another process, e.g.
    a parent that exec'd us without clearing the environment, are ignored) and unsets the
    variables in the C environment; they are removed from ``os.environ`` too, so that no child
    process (nor a library that adopts fd 3 by itself, as cheroot's ``prepare()`` would) sees them.
    """
    try:
        fds = systemd.daemon.listen_fds()
    finally:
        for name in ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"):
            os.environ.pop(name, None)
    socks = []
    for fd in fds:
        try:
            sock = socket.socket(fileno=fd)   # family and type detected from the descriptor
        except OSError as exc:
            raise ServeError("descriptor %d passed by systemd is not a socket: %s" % (fd, exc.strerror)) from None
        if sock.type != socket.SOCK_STREAM or sock.family not in (socket.AF_INET, socket.AF_INET6):
            raise ServeError("socket %d passed by systemd is not a TCP stream socket" % fd)
        os.set_inheritable(fd, False)
        socks.append(sock)
    return socks


def client_address(addr) -> str:
    """Printable peer address; IPv4 clients of a dual-stack socket shown as plain IPv4."""
    a = str(addr or "-")
    if a.lower().startswith("::ffff:") and "." in a:
        return a[7:]
    return a


def format_address(sockname) -> str:
    host, port = sockname[:2]
    return "[%s]:%d" % (host, port) if ":" in host else "%s:%d" % (host, port)
