"""Log lines about what network clients did: escaped, shortened and rate-limited.

Everything a client sends (method, path, device key, header values, exception texts that quote
them) is untrusted. :func:`printable` makes such text one harmless line: control characters
(``%0a`` decoded into a path would otherwise forge journal lines), line and paragraph separators
and other non-printable characters become ``\\xNN``/``\\uNNNN`` escapes, a backslash becomes
``\\\\`` (so an escape in the log is always ours), and long text is cut. :class:`ClientLog` applies
it to every string argument and drops lines beyond a rate, so a flood of bad requests cannot
flood the journal either.
"""
from __future__ import annotations

import logging
import threading
import time

from ethoscope_rsync.system import logs

LIMIT = 200


def printable(text, limit: int = LIMIT) -> str:
    """``text`` (any object) as one printable line of at most ``limit`` characters."""
    return logs.printable(text, limit)


class ClientLog:
    """A logger for client-caused events: every ``str`` argument escaped, at most ``rate`` lines a
    second (bursts of ``burst``); the next line after a drop says how many were dropped."""

    def __init__(self, logger: logging.Logger, rate: float = 5.0, burst: int = 20,
                 clock=time.monotonic):
        self.logger = logger
        self.rate, self.burst, self.clock = float(rate), float(burst), clock
        self._tokens = float(burst)
        self._last = clock()
        self._dropped = 0
        self._lock = threading.Lock()

    def _admit(self) -> int | None:
        """None when the line must be dropped, else how many lines were dropped before it."""
        with self._lock:
            now = self.clock()
            self._tokens = min(self.burst, self._tokens + (now - self._last) * self.rate)
            self._last = now
            if self._tokens < 1.0:
                self._dropped += 1
                return None
            self._tokens -= 1.0
            dropped, self._dropped = self._dropped, 0
            return dropped

    def log(self, level: int, fmt: str, *args) -> bool:
        """Log ``fmt % args`` with string arguments escaped; False when rate-limited away."""
        if not self.logger.isEnabledFor(level):
            return False
        dropped = self._admit()
        if dropped is None:
            return False
        safe = tuple(printable(a) if isinstance(a, str) else a for a in args)
        if dropped:
            fmt = "%s (%d similar lines dropped)" % (fmt, dropped)
        self.logger.log(level, fmt, *safe)
        return True

    def warning(self, fmt: str, *args) -> bool:
        return self.log(logging.WARNING, fmt, *args)

    def error(self, fmt: str, *args) -> bool:
        return self.log(logging.ERROR, fmt, *args)
