"""The one place that runs processes: list argv, no shell, timeouts, clean process-group kills.

Every child runs in its own session so that stopping it also stops what it started (rsync's
ssh). A shared ``threading.Event`` (``stop``) set by the SIGTERM handler makes every wait give
up within half a second, terminate its child and report ``interrupted``.
"""
from __future__ import annotations

import codecs
import contextlib
import dataclasses
import os
import selectors
import signal
import subprocess
import threading
import time
import re
from typing import Callable, ContextManager, Iterator, Protocol

POLL = 0.5          # seconds between checks of the stop event and deadlines
KILL_GRACE = 3.0    # seconds between SIGTERM and SIGKILL
MAX_RECORD = 64 << 10           # longer output records are cut (a device's output is hostile)
MAX_STDERR = 64 << 10           # the last of it is kept
MAX_STDOUT = 8 << 20            # kept by run(); stream() keeps none
MAX_INPUT = 64 << 10             # stdin given to a child: fits a pipe's buffer, so writing it never blocks
MAX_READY = 1 << 20              # bytes of a held helper's first line (a device's holder: its databases)
BLOCK = 65536                    # bytes read at once from a child (never byte by byte)


def split_records(buffer: str) -> tuple:
    """Split captured output on newlines and carriage returns -> (complete records, rest)."""
    pieces = re.split(r"[\r\n]", buffer)
    return tuple(p for p in pieces[:-1] if p.strip()), pieces[-1]


class _Records:
    """Records of a stream as chunks arrive: linear in the output's size (a chunk without a line end
    is only appended), every record at most MAX_RECORD characters."""

    def __init__(self):
        self.pending, self.size = [], 0

    def feed(self, text: str) -> tuple:
        if "\n" not in text and "\r" not in text:
            if self.size < MAX_RECORD:
                self.pending.append(text[:MAX_RECORD - self.size])
                self.size += len(self.pending[-1])
            return ()
        records, rest = split_records("".join(self.pending) + text)
        self.pending, self.size = [rest[:MAX_RECORD]], min(len(rest), MAX_RECORD)
        return tuple(record[:MAX_RECORD] for record in records)

    def rest(self) -> str:
        return "".join(self.pending)


@dataclasses.dataclass(frozen=True)
class Result:
    argv: tuple
    returncode: int
    stdout: str
    stderr: str
    timed_out: bool = False
    interrupted: bool = False
    cut: bool = False              # its stdout reached `cut_at`: the child was ended there

    @property
    def last_error_line(self) -> str:
        lines = [line.strip() for line in self.stderr.splitlines() if line.strip()]
        return lines[-1] if lines else ""


def _terminate(process: subprocess.Popen, first: int = signal.SIGTERM, grace: float = KILL_GRACE) -> None:
    """Signal the child's whole process group (SIGTERM, or `first`), SIGKILL it if it lingers `grace` s."""
    if process.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, first)
    try:
        process.wait(grace)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def _spawn(argv: tuple, stdin=subprocess.DEVNULL, env: dict | None = None) -> subprocess.Popen:
    env = {**os.environ, **(env or {}), "LC_ALL": "C.UTF-8"}
    return subprocess.Popen(list(argv), stdin=stdin, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            start_new_session=True, env=env)


def run(argv: tuple, *, timeout: float, stop: threading.Event | None = None, input: bytes = b"",
        env: dict | None = None, stop_signal: int = signal.SIGTERM, stop_grace: float = KILL_GRACE,
        cut_at: int = 0) -> Result:
    """Run to completion, capture output; `input` (at most MAX_INPUT bytes) is the child's stdin;
    `cut_at` > 0: the child is ended once its stdout reaches that many characters (a device's answer)."""
    return stream(argv, lambda record: None, timeout=timeout, stop=stop, keep_stdout=True, input=input, env=env,
                  stop_signal=stop_signal, stop_grace=stop_grace, cut_at=cut_at)


def stream(argv: tuple, on_record: Callable[[str], None], *, timeout: float,
           stop: threading.Event | None = None, keep_stdout: bool = False, input: bytes = b"",
           env: dict | None = None, stop_signal: int = signal.SIGTERM, stop_grace: float = KILL_GRACE,
           cut_at: int = 0) -> Result:
    """Run `argv`, calling on_record for each stdout record (split on \\n and \\r).

    Ends the child when `timeout` seconds have passed or `stop` is set: `stop_signal` to its process
    group (SIGINT for a child that cleans up only then, as restic removes its lock), SIGKILL after
    `stop_grace` seconds. `env`: variables added to the child's environment only (never to ours).
    """
    if len(input) > MAX_INPUT:
        raise ValueError(f"at most {MAX_INPUT} bytes of input, not {len(input)}")
    try:
        process = _spawn(argv, subprocess.PIPE if input else subprocess.DEVNULL, env)
    except (OSError, ValueError) as error:       # ValueError: a NUL in an argument
        return Result(tuple(argv), 127, "", f"cannot run {argv[0]}: {getattr(error, 'strerror', None) or error}")
    assert process.stdout is not None and process.stderr is not None     # _spawn pipes both
    if input:
        assert process.stdin is not None                   # piped when there is input
        with contextlib.suppress(BrokenPipeError):    # a child that exits unread says why on stderr
            process.stdin.write(input)
        with contextlib.suppress(BrokenPipeError):
            process.stdin.close()
    deadline = time.monotonic() + timeout
    stdout_parts, stderr_parts, records = [], [], _Records()
    kept = {"out": 0, "err": 0}
    timed_out = interrupted = cut = False
    selector = selectors.DefaultSelector()
    selector.register(process.stdout, selectors.EVENT_READ, "out")
    selector.register(process.stderr, selectors.EVENT_READ, "err")
    open_streams = 2
    decoders = {name: codecs.getincrementaldecoder("utf-8")("surrogateescape") for name in ("out", "err")}
    try:
        while open_streams:
            if stop is not None and stop.is_set():
                interrupted = True
                break
            if time.monotonic() > deadline:
                timed_out = True
                break
            for key, _ in selector.select(POLL):
                chunk = os.read(key.fd, BLOCK)
                if not chunk:
                    selector.unregister(key.fileobj)
                    open_streams -= 1
                    continue
                text = decoders[key.data].decode(chunk)     # a character may span two reads
                if key.data == "err":
                    stderr_parts.append(text)
                    kept["err"] += len(text)
                    while kept["err"] - len(stderr_parts[0]) >= MAX_STDERR:
                        kept["err"] -= len(stderr_parts.pop(0))
                    continue
                if keep_stdout and kept["out"] < MAX_STDOUT:
                    stdout_parts.append(text[:MAX_STDOUT - kept["out"]])
                    kept["out"] += len(stdout_parts[-1])
                for record in records.feed(text):
                    on_record(record)
                if cut_at and kept["out"] >= cut_at:
                    cut = True
                    break
            if cut:
                break
        if records.rest().strip() and not (timed_out or interrupted or cut):
            on_record(records.rest())
    finally:
        selector.close()
        if timed_out or interrupted or cut:
            _terminate(process, stop_signal, stop_grace)
        remaining = max(0.1, deadline - time.monotonic())
        try:
            process.wait(remaining)
        except subprocess.TimeoutExpired:
            timed_out = True
            _terminate(process)
        process.stdout.close()
        process.stderr.close()
    return Result(tuple(argv), process.returncode, "".join(stdout_parts)[:cut_at or None], "".join(stderr_parts),
                  timed_out, interrupted, cut)


class Held:
    """A helper process kept running (e.g. the live-database holder) while other work goes on."""

    def __init__(self, process: subprocess.Popen, stop: threading.Event | None):
        self.process, self._stop = process, stop

    def ready_line(self, timeout: float) -> str:
        """Its first stdout line, or "" if none came within `timeout` (or it ended, a stop, or the
        line passed MAX_READY bytes). Read in blocks: a helper that never ends its line costs at most
        `timeout` and one read per block it sends; what follows the line is not used."""
        parts, size = [], 0
        deadline = time.monotonic() + timeout
        stdout = self.process.stdout
        assert stdout is not None                       # held() pipes it
        with selectors.DefaultSelector() as selector:
            selector.register(stdout, selectors.EVENT_READ)
            while size <= MAX_READY and time.monotonic() < deadline:
                if self._stop is not None and self._stop.is_set():
                    break
                if selector.select(min(POLL, max(0.0, deadline - time.monotonic()))):
                    block = os.read(stdout.fileno(), BLOCK)
                    if not block:
                        break
                    end = block.find(b"\n")
                    parts.append(block if end < 0 else block[:end])
                    size += len(parts[-1])
                    if end >= 0:
                        line = b"".join(parts)
                        return line.decode("utf-8", "replace").strip() if size <= MAX_READY else ""
        return ""


@contextlib.contextmanager
def held(argv: tuple, *, stop: threading.Event | None = None) -> Iterator[Held]:
    """Start argv with a stdin pipe and keep it alive during the block.

    On exit its stdin is closed (its cue to finish) and it is given KILL_GRACE seconds before
    being terminated.
    """
    process = subprocess.Popen(list(argv), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                               stderr=subprocess.DEVNULL, start_new_session=True)
    assert process.stdin is not None and process.stdout is not None     # both piped just above
    try:
        yield Held(process, stop)
    finally:
        with contextlib.suppress(BrokenPipeError, OSError):
            process.stdin.close()
        try:
            process.wait(KILL_GRACE)
        except subprocess.TimeoutExpired:
            _terminate(process)
        process.stdout.close()


class Processes(Protocol):
    """What a caller that may be handed a fake (a test's injected fault) uses of this module; the
    module itself is the real one."""

    def run(self, argv: tuple, *, timeout: float, stop: threading.Event | None = ...,
            cut_at: int = ...) -> Result: ...

    def stream(self, argv: tuple, on_record: Callable[[str], None], *, timeout: float,
               stop: threading.Event | None = ...) -> Result: ...

    def held(self, argv: tuple, *, stop: threading.Event | None = ...) -> ContextManager[Held]: ...
