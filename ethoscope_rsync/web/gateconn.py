"""What a :class:`ethoscope_rsync.web.gate.Gate` hands to the worker threads, and how it checks a head.

A gated connection (:class:`ethoscope_rsync.web.cheroot_seam.GatedConnection`) has files that never
block: its ``rfile`` (:class:`HeadReader`) holds the request head the gate already read (then end
of file: the service reads no request bodies), its ``wfile`` (:class:`TailWriter`) sends what the
socket takes at once and keeps the rest as a tail of memoryviews (of the cached answer bytes, not
copies) for the gate to send when the client reads.

:func:`check_head` is the gate's reading of a complete head: whether its header lines are well
formed (RFC 9112: a field name is a token directly followed by a colon; a line without a colon,
whitespace before the colon or a folded line is a 400) and whether it declares a body.
"""
from __future__ import annotations

import collections
import re
from typing import NamedTuple

WAIT, BUSY, FLUSH, DRAIN = "wait", "busy", "flush", "drain"   # where a connection is, for the gate
FIELD_NAME = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")      # RFC 9110 token


class HeadReader:
    """cheroot's ``rfile``: the request head the gate read, then end of file (no bodies here)."""

    def __init__(self):
        self._buf, self._pos, self.bytes_read = b"", 0, 0

    def feed(self, data: bytes):
        self._buf, self._pos = data, 0

    def _take(self, stop: int, size) -> bytes:
        if size is not None and size >= 0:
            stop = min(stop, self._pos + size)
        out = self._buf[self._pos:stop]
        self._pos = stop
        self.bytes_read += len(out)
        return out

    def readline(self, size=None) -> bytes:
        end = self._buf.find(b"\n", self._pos)
        return self._take(len(self._buf) if end < 0 else end + 1, size)

    def read(self, size=None) -> bytes:
        return self._take(len(self._buf), size)

    def has_data(self) -> bool:
        return self._pos < len(self._buf)

    @property
    def closed(self) -> bool:
        """Never closed (cheroot's pool asks before it shuts a stuck connection down)."""
        return False

    def close(self):
        self._buf, self._pos = b"", 0


class TailWriter:
    """cheroot's ``wfile``: sends without blocking, keeps what the socket did not take."""

    def __init__(self, sock):
        self.sock, self.bytes_written = sock, 0
        self.tail: collections.deque = collections.deque()

    def write(self, data) -> int:
        view = memoryview(data if isinstance(data, bytes) else bytes(data))
        self.bytes_written += len(view)
        if not self.tail:
            view = self.send(view)
        if view:
            self.tail.append(view)
        return len(data)

    def send(self, view: memoryview) -> memoryview:
        """Send what the socket takes now; → the rest (OSError when the peer is gone)."""
        while view:
            try:
                n = self.sock.send(view)
            except BlockingIOError:
                break
            view = view[n:]
        return view

    def flush_some(self) -> bool:
        """Send more of the tail; True when it is all sent."""
        while self.tail:
            rest = self.send(self.tail[0])
            if rest:
                self.tail[0] = rest
                return False
            self.tail.popleft()
        return True

    def flush(self):
        pass

    def close(self):
        pass


class Head(NamedTuple):
    problem: str       # why the head is malformed (→ 400), "" when it is well formed
    has_body: bool     # it declares a body (the service reads none: the connection closes after)


def check_head(head: bytes) -> Head:
    """A complete request head (request line, header lines, blank line) read as the gate needs it."""
    has_body = False
    for line in head.split(b"\r\n")[1:]:
        if not line:
            break
        name, colon, value = line.partition(b":")
        if not colon:
            return Head("a header line without a colon", False)
        if not FIELD_NAME.fullmatch(name):
            return Head("a header name with whitespace or a character not allowed", False)
        name = name.lower()
        if name == b"transfer-encoding" or name == b"content-length" and value.strip() not in (b"", b"0"):
            has_body = True
    return Head("", has_body)
