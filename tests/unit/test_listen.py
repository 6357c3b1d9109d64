"""Listening addresses and the socket-activation hand-over, without a server."""
import os
import socket

import pytest

from ethoscope_rsync.listen import ServeError, activated_socket, bind_socket, client_address, format_address, \
    parse_listen


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


def test_listen_fds_for_another_process_are_ignored_and_cleared():
    env = {"LISTEN_PID": str(os.getpid() + 1), "LISTEN_FDS": "1", "LISTEN_FDNAMES": "x"}
    assert activated_socket(env) is None
    assert env == {}


def test_port_in_use_is_one_clear_error():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(ServeError, match=f"port already in use: 127.0.0.1:{port}"):
            bind_socket(f"127.0.0.1:{port}")
