"""``ethoscope-backup pause DEVICE --reason TEXT [--until DATE]`` and ``resume DEVICE``: the admin's
pauses (:mod:`ethoscope_rsync.state.pauses`), for a device switched off between experiments. Paused,
it is not copied and raises no stale alert; its history and its copies stay (verify keeps checking them)."""
from __future__ import annotations

import re
import time

from ethoscope_rsync.config.devices import DeviceError, parse_selection
from ethoscope_rsync.render import escape
from ethoscope_rsync.render.upstream import find_device
from ethoscope_rsync.state import pauses
from ethoscope_rsync.state.health import Pause
from ethoscope_rsync.state.store import load_history, write_json_atomic
from ethoscope_rsync.system.exits import EXIT_OK, EXIT_USAGE

_DATE = re.compile(r"(\d{4})-(\d{2})-(\d{2})(?:[ T](\d{1,2}):(\d{2}))?")


class PauseError(ValueError):
    """A device or date the command cannot use (one line, exit 2)."""


def parse_until(text: str | None, now: float) -> float:
    """``YYYY-MM-DD`` (the start of that day) or ``YYYY-MM-DD HH:MM``, local time, in the future; None: 0."""
    if not text:
        return 0.0
    match = _DATE.fullmatch(text.strip())
    if not match:
        raise PauseError(f"--until {text!r}: give a date as YYYY-MM-DD or \"YYYY-MM-DD HH:MM\"")
    year, month, day, hour, minute = (int(g) if g else 0 for g in match.groups())
    try:
        moment = time.mktime((year, month, day, hour, minute, 0, 0, 0, -1))
    except (OverflowError, ValueError):
        raise PauseError(f"--until {text!r}: not a date") from None
    if time.localtime(moment)[:3] != (year, month, day):
        raise PauseError(f"--until {text!r}: not a date")
    if moment <= now:
        raise PauseError(f"--until {text!r} is already past")
    return moment


def resolve(config, text: str) -> tuple:
    """(name, machine id or "") of the device `text` names: a number, ETHOSCOPE_NNN, or a machine id
    the history knows."""
    try:
        (token,) = parse_selection(text)
    except (DeviceError, ValueError):
        raise PauseError(f"{text!r} is not one device number, ETHOSCOPE_NNN name or machine id") from None
    history = load_history(config.history_file)
    key = find_device(history.devices, text.strip())
    if key is not None:
        entry = history.devices[key]
        return entry.name or f"ETHOSCOPE_{token:03d}", entry.id
    if isinstance(token, int):
        return f"ETHOSCOPE_{token:03d}", ""
    raise PauseError(f"no device with machine id {token} in the history: give its name (ETHOSCOPE_NNN)")


def pause(config, device: str, reason: str, until: str | None, out=print, now: float | None = None) -> int:
    now = time.time() if now is None else now
    try:
        name, machine_id = resolve(config, device)
        end = parse_until(until, now)
    except PauseError as error:
        out(f"pause: {error}")
        return EXIT_USAGE
    paused = pauses.load(config.pauses_file)
    paused[name] = pauses.Paused(name, machine_id, Pause(" ".join((reason or "").split())[:pauses.REASON], now, end))
    write_json_atomic(config.pauses_file, pauses.to_json(paused))
    out(f"{name} paused{': ' + escape.terminal(reason) if reason else ''}"
        + (" until " + time.strftime("%Y-%m-%d %H:%M", time.localtime(end)) if end
           else " until: ethoscope-backup resume " + name)
        + "; it is not copied and raises no stale alert meanwhile")
    return EXIT_OK


def resume(config, device: str, out=print) -> int:
    try:
        name, machine_id = resolve(config, device)
    except PauseError as error:
        out(f"resume: {error}")
        return EXIT_USAGE
    paused = pauses.load(config.pauses_file)
    entry = pauses.find(paused, machine_id or name, name)
    if entry is None:
        out(f"{name} is not paused")
        return EXIT_OK
    del paused[entry.name]
    write_json_atomic(config.pauses_file, pauses.to_json(paused))
    out(f"{name} resumed: the next pass copies it")
    return EXIT_OK
