"""Bounded waiting for tests: poll a condition until it holds or a deadline passes (never a bare sleep)."""
import time


def wait_for(predicate, timeout=20.0, interval=0.1, what="condition"):
    """Return predicate()'s first truthy value; AssertionError after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError("timed out after %.1fs waiting for %s" % (timeout, what))
        time.sleep(interval)
