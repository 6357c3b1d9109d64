"""The grammars of values a person writes: one parser each, and the words of its refusals."""
import pytest

from ethoscope_rsync.config.syntax import (Endpoint, parse_addresses, parse_endpoint, parse_kex, parse_rate,
                                           parse_size, parse_url)


@pytest.mark.parametrize("text, expected", [
    ("localhost", Endpoint("localhost", 80)), ("169.254.1.1:8080", Endpoint("169.254.1.1", 8080)),
    ("[fe80::1]:81", Endpoint("fe80::1", 81)), ("[fe80::1]", Endpoint("fe80::1", 80)),
    (" node.lab ", Endpoint("node.lab", 80))])
def test_a_node_server(text, expected):
    assert parse_endpoint(text, default_port=80) == expected


@pytest.mark.parametrize("text", ["a/b", "x:99999", "host:port", "a b", "http://x", "::1:80", "[::1]80", "[::1",
                                  "-oProxy", "a..b", ""])
def test_not_a_node_server(text):
    with pytest.raises(ValueError):
        parse_endpoint(text, default_port=80)


@pytest.mark.parametrize("text, expected", [
    ("8094", Endpoint("0.0.0.0", 8094)), ("127.0.0.1:80", Endpoint("127.0.0.1", 80)),
    ("[::]:8093", Endpoint("::", 8093)), (":8093", Endpoint("0.0.0.0", 8093))])
def test_a_listening_address(text, expected):
    assert parse_endpoint(text, any_host="0.0.0.0") == expected


@pytest.mark.parametrize("text", ["::1:80", "[::1]80", "host:port", "1.2.3.4:70000", "[::1", "nonsense",
                                  "127.0.0.1"])
def test_not_a_listening_address(text):
    with pytest.raises(ValueError):
        parse_endpoint(text, any_host="0.0.0.0")


def test_endpoints_print_as_they_are_written():
    assert (str(Endpoint("fe80::1", 80)), str(Endpoint("node", 8093))) == ("[fe80::1]:80", "node:8093")


def test_sizes_and_rates():
    assert parse_size("1G") == 1 << 30 and parse_size("500M") == 500 << 20 and parse_size("0") == 0
    assert parse_rate("") == 0 and parse_rate("1500") == 1500 and parse_rate("10M") == 10240
    for bad in ("-3", "lots"):
        with pytest.raises(ValueError):
            parse_size(bad)


@pytest.mark.parametrize("text", ["10 MB/s", "10M/s"])
def test_a_rate_per_second_says_how_to_write_it(text):
    with pytest.raises(ValueError, match="per second already: write e.g. 10M"):
        parse_rate(text)


def test_addresses_urls_and_kex():
    assert parse_addresses("a@lab.org, b@lab.org") == ("a@lab.org", "b@lab.org") and parse_addresses("") == ()
    assert parse_url(" https://hooks.lab/x ") == "https://hooks.lab/x" and parse_url("") == ""
    assert parse_kex("^curve25519-sha256") == "^curve25519-sha256"
    for parser, bad in ((parse_addresses, "-oX@y"), (parse_url, "ftp://x"), (parse_kex, "a b")):
        with pytest.raises(ValueError):
            parser(bad)
