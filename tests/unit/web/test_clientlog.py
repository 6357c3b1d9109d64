"""Log lines about clients: escaped, cut, rate-limited."""
import logging

import pytest

from ethoscope_rsync.web.clientlog import ClientLog, printable


@pytest.mark.parametrize("text, expected", [
    ("GET /status", "GET /status"),
    ("/a\nFAKE", "/a\\x0aFAKE"),
    ("\r\t\x00\x7f\x85", "\\x0d\\x09\\x00\\x7f\\x85"),
    ("a\u2028b\u2029c", "a\\u2028b\\u2029c"),
    ("back\\slash", "back\\\\slash"),           # an escape in the log is always ours
    ("é ü ✓", "é ü ✓"),                          # printable non-ASCII stays readable
    ("\U000e0001", "\\U000e0001"),
    (b"bytes\n", "b'bytes\\\\n'"),
    (None, "None"),
])
def test_printable(text, expected):
    assert printable(text) == expected


def test_printable_cuts_long_text_after_escaping():
    assert printable("x" * 300, limit=10) == "xxxxxxxxxx...(290 more characters)"
    assert printable("\n" * 300, limit=10) == "\\x0a\\x0a...(298 more characters)"
    assert printable("x" * 10, limit=10) == "x" * 10


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


def test_rate_limit_and_dropped_count(caplog):
    clock = Clock()
    clients = ClientLog(logging.getLogger("test.clientlog"), rate=2.0, burst=3, clock=clock)
    with caplog.at_level(logging.WARNING, logger="test.clientlog"):
        sent = [clients.warning("bad %s", "x%d" % i) for i in range(10)]
        assert sent == [True] * 3 + [False] * 7
        clock.now += 1.0                              # two more lines' worth
        assert clients.warning("bad %s", "late") and clients.warning("bad %s", "later")
        assert not clients.warning("bad %s", "dropped")
    assert caplog.messages == ["bad x0", "bad x1", "bad x2", "bad late (7 similar lines dropped)", "bad later"]


def test_arguments_escaped_numbers_kept(caplog):
    clients = ClientLog(logging.getLogger("test.clientlog2"))
    with caplog.at_level(logging.WARNING, logger="test.clientlog2"):
        clients.warning("%s %d %s", "a\nb", 404, "c")
    assert caplog.messages == ["a\\x0ab 404 c"]


def test_disabled_level_costs_no_token():
    logger = logging.getLogger("test.clientlog3")
    logger.setLevel(logging.ERROR)
    clients = ClientLog(logger, rate=0.0, burst=1)
    assert clients.warning("x") is False
    assert clients.error("y") is True
