"""Listening addresses and the socket-activation hand-over, without a server."""
import os
import socket
import subprocess

import pytest

from ethoscope_rsync.web.listen import (ServeError, activated_sockets, bind_socket, client_address,
                                        format_address, parse_listen)

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))


@pytest.mark.parametrize("text, expected", [
    (None, ("0.0.0.0", 8093)), ("8094", ("0.0.0.0", 8094)), ("127.0.0.1:80", ("127.0.0.1", 80)),
    ("[::]:8093", ("::", 8093)), (":8093", ("0.0.0.0", 8093))])
def test_parse_listen(text, expected):
    assert parse_listen(text) == expected


@pytest.mark.parametrize("text", ["::1:80", "[::1]80", "host:port", "1.2.3.4:70000", "[::1"])
def test_parse_listen_rejects(text):
    with pytest.raises(ServeError):
        parse_listen(text)


def test_addresses_for_people():
    assert client_address("::ffff:127.0.0.1") == "127.0.0.1"
    assert client_address("::1") == "::1" and client_address(None) == "-"
    assert format_address(("::", 8093, 0, 0)) == "[::]:8093" and format_address(("1.2.3.4", 5)) == "1.2.3.4:5"


def test_listen_fds_for_another_process_are_ignored_and_cleared(monkeypatch):
    monkeypatch.setenv("LISTEN_PID", str(os.getpid() + 1))
    monkeypatch.setenv("LISTEN_FDS", "1")
    monkeypatch.setenv("LISTEN_FDNAMES", "x")
    assert activated_sockets() == []
    assert not {"LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"} & set(os.environ)


def _activated_child(fds, listen_fds):
    """Run activated_sockets() in a child holding ``fds`` as 3, 4... and LISTEN_PID = its own pid."""
    code = ("import os, sys\n"
            "from ethoscope_rsync.web.listen import ServeError, activated_sockets\n"
            "try:\n"
            "    socks = activated_sockets()\n"
            "except ServeError as exc:\n"
            "    print('error:', exc); sys.exit(0)\n"
            "print(sorted(s.family.name for s in socks), 'LISTEN_PID' in os.environ,\n"
            "      [os.get_inheritable(s.fileno()) for s in socks])\n")

    def child_setup():
        for n, fd in enumerate(fds):
            os.dup2(fd, 3 + n)
            os.set_inheritable(3 + n, True)

    # the shell's pid is the one python gets by exec: what systemd sets LISTEN_PID to
    shell = 'LISTEN_PID=$$ LISTEN_FDS=%d exec /usr/bin/python3 -c "$0"' % listen_fds
    done = subprocess.run(["sh", "-c", shell, code], cwd=ROOT, preexec_fn=child_setup, close_fds=False,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_several_activated_sockets_of_any_family():
    with socket.create_server(("127.0.0.1", 0)) as v4, socket.create_server(("::1", 0), family=socket.AF_INET6) as v6:
        assert _activated_child([v4.fileno(), v6.fileno()], 2) == "['AF_INET', 'AF_INET6'] False [False, False]"


def test_activated_descriptor_that_is_no_tcp_socket():
    r, w = os.pipe()
    try:
        assert _activated_child([r], 1).startswith("error: descriptor 3 passed by systemd is not a socket")
    finally:
        os.close(r)
        os.close(w)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        assert _activated_child([udp.fileno()], 1) == "error: socket 3 passed by systemd is not a TCP stream socket"


def test_port_in_use_is_one_clear_error():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(ServeError, match=f"port already in use: 127.0.0.1:{port}"):
            bind_socket(f"127.0.0.1:{port}")
