"""Logging: journald with structured fields under systemd, plain lines on a terminal.

Journal fields used everywhere: DEVICE_ID, DEVICE_NAME, and per finished transfer
TRANSFER_KIND, TRANSFER_BYTES, TRANSFER_FILES, RSYNC_EXIT_CODE, so that
``journalctl -u ethoscope-backup.service DEVICE_NAME=ETHOSCOPE_004`` tells one device's story.
"""
from __future__ import annotations

import logging
import os
import sys

IDENTIFIER = "ethoscope-backup"
log = logging.getLogger("ethoscope_rsync")     # modules log here or to a child ("ethoscope_rsync.web")


def _escape(char: str) -> str:
    if char == "\\":
        return "\\\\"
    if char.isprintable():
        return char
    code = ord(char)
    return "\\x%02x" % code if code < 0x100 else "\\u%04x" % code if code < 0x10000 else "\\U%08x" % code


def printable(text, limit: int | None = None) -> str:
    """`text` (any object) as one harmless line: control characters (newlines, terminal escapes),
    line and paragraph separators, bidi marks and undecodable bytes become ``\\xNN``/``\\uNNNN``
    escapes and a backslash ``\\\\`` (so an escape in a log is always ours): a file name or an HTTP
    path from the LAN can neither forge a log line nor drive a terminal. With `limit`, longer text
    is cut, saying how much was left out."""
    text = text if isinstance(text, str) else str(text)
    if (limit is None or len(text) <= limit) and text.isprintable() and "\\" not in text:
        return text
    out: list = []
    size = 0
    for shown, char in enumerate(text):
        piece = _escape(char)
        size += len(piece)
        if limit is not None and size > limit:
            return "".join(out) + "...(%d more characters)" % (len(text) - shown)
        out.append(piece)
    return "".join(out)


def one_line(text: str) -> str:
    """Text from a device for the status and messages: its control characters, separators and
    undecodable bytes escaped like :func:`printable` does, its backslashes left as they are (rsync
    writes its own escapes with them)."""
    return text if text.isprintable() else "".join(c if c.isprintable() else _escape(c) for c in text)


class _Printable(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.msg, record.args = printable(record.getMessage()), None
        return True


def _under_journald() -> bool:
    """True when stderr is connected to the journal (systemd sets JOURNAL_STREAM=dev:ino)."""
    stream = os.environ.get("JOURNAL_STREAM", "")
    if not stream:
        return False
    try:
        info = os.fstat(sys.stderr.fileno())
    except (OSError, ValueError):
        return False
    return stream == f"{info.st_dev}:{info.st_ino}"


class _TerminalHandler(logging.StreamHandler):
    """On a terminal, a log line first clears the live progress line (see runner.TerminalProgress)."""

    def emit(self, record: logging.LogRecord) -> None:
        self.stream.write("\r\033[K")
        super().emit(record)


def setup(debug: bool = False) -> logging.Logger:
    """Configure the package logger once; returns it."""
    log.handlers.clear()
    log.propagate = False
    log.setLevel(logging.DEBUG if debug else logging.INFO)
    handler: logging.Handler
    if _under_journald():
        try:
            from systemd.journal import JournalHandler
            handler = JournalHandler(SYSLOG_IDENTIFIER=IDENTIFIER)
        except ImportError:
            handler = logging.StreamHandler(sys.stderr)
    else:
        handler = _TerminalHandler(sys.stderr) if sys.stderr.isatty() else logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(levelname).1s %(message)s" if not debug
                                               else "%(asctime)s %(levelname).1s %(threadName)s %(message)s"))
    handler.addFilter(_Printable())
    log.addHandler(handler)
    return log


def device_fields(device) -> dict:
    """Structured journal fields naming a device."""
    return {"DEVICE_ID": device.id or device.key, "DEVICE_NAME": device.name}


class Notifier:
    """sd_notify messages when systemd listens (NOTIFY_SOCKET), nothing otherwise."""

    def __init__(self):
        self._notifier = None
        if os.environ.get("NOTIFY_SOCKET"):
            try:
                import sdnotify
                self._notifier = sdnotify.SystemdNotifier()
            except ImportError:
                self._notifier = None
            if self._notifier is not None and self._notifier.socket is not None:
                # a message that cannot be sent at once is dropped: it must never stall the program
                self._notifier.socket.setblocking(False)

    def send(self, message: str) -> None:
        if self._notifier is not None:
            self._notifier.notify(message)

    def status(self, text: str) -> None:
        self.send(f"STATUS={text}")
