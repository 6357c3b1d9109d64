"""The connections a :class:`ethoscope_rsync.web.gate.Gate` hands to cheroot's worker threads.

A :class:`GatedConnection` is a cheroot ``HTTPConnection`` whose files never block: its
``rfile`` (:class:`HeadReader`) holds the request head the gate already read (then end of file:
the service reads no request bodies), its ``wfile`` (:class:`TailWriter`) sends what the socket
takes at once and keeps the rest as a tail of memoryviews (of the cached answer bytes, not copies)
for the gate to send when the client reads. ``close()`` goes back to the gate too, which sends
the tail first.
"""
from __future__ import annotations

import collections

from cheroot.server import HTTPConnection

WAIT, BUSY, FLUSH, DRAIN = "wait", "busy", "flush", "drain"   # where a connection is, for the gate


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

    def close(self):
        self._buf, self._pos = b"", 0


class TailWriter:
    """cheroot's ``wfile``: sends without blocking, keeps what the socket did not take."""

    def __init__(self, sock):
        self.sock, self.tail, self.bytes_written = sock, collections.deque(), 0

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


class GatedConnection(HTTPConnection):
    """A cheroot connection whose files are a :class:`HeadReader` and a :class:`TailWriter`."""

    def __init__(self, server, sock, gate):
        self.gate = gate
        super().__init__(server, sock, makefile=self._file)
        self.state, self.since, self.started = WAIT, 0.0, None
        self.head = bytearray()
        self.close_after = False

    @staticmethod
    def _file(sock, mode, bufsize=None):
        return HeadReader() if "r" in mode else TailWriter(sock)

    def close(self):
        """A worker is done with it: the gate sends the rest of the answer, then closes."""
        self.gate.release(self, close=True)

    def shut(self):
        try:
            super().close()
        except OSError:
            pass


def declares_body(head: bytes) -> bool:
    """A request with a body (the service reads none): its connection closes after the answer."""
    low = head.lower()
    return b"\ntransfer-encoding:" in low or any(
        line.split(b":", 1)[1].strip() not in (b"", b"0")
        for line in low.split(b"\r\n") if line.startswith(b"content-length:"))
