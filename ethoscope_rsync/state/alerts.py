"""What the alerts reported (``alerts.json``): the condition of each subject, a change of it, and the
messages a channel did not take yet. Records and their tolerant readers only; deciding and sending
is :mod:`ethoscope_rsync.alerts`."""
from __future__ import annotations

import dataclasses

from ethoscope_rsync.state.model import DAY, mapping, number, sequence

FAILED, STALE, FILLING, PASS_FAILED, DAMAGED = "failed", "stale", "filling", "pass failed", "damaged"
# The second copy (subjects "offsite" and "offsite:check").
OFFSITE_FAILED, OFFSITE_OLD, OFFSITE_DAMAGED = "second copy failing", "second copy old", "second copy damaged"
# The heartbeat (subjects "passes" and "timer"): passes stopped or stuck, the timer off while a switch is on.
OVERDUE, LONG_PASS, TIMER_OFF = "passes overdue", "pass running too long", "timer inactive"
KEY_WAIT = "waiting for the SSH key"     # passes skipped: the unit's ConditionPathExists= on the key
RETRY_FOR = 7 * DAY    # seconds an undelivered message is tried again (after every pass)
MAX_UNDELIVERED = 20       # undelivered messages kept; the oldest are given up first


@dataclasses.dataclass(frozen=True)
class Condition:
    """What is true of one subject now. `problem` is "" when all is well, None when unknown."""
    subject: str
    problem: str | None
    name: str                  # who, for people: ETHOSCOPE_004, "results", "backup pass"
    since: float = 0.0         # when the problem began (0: never succeeded / unknown)
    detail: str = ""           # the last error, one line
    device_id: str = ""
    last_success: float = 0.0
    passes: int = 0            # failed passes in a row (devices)
    found: bool = True         # devices: in the last pass at all
    protected: float = 0.0     # devices: their data is on the node up to this moment (0: never copied whole)


@dataclasses.dataclass(frozen=True)
class Change:
    """A subject went bad (`recovered` False) or is good again (`recovered` True)."""
    condition: Condition
    recovered: bool
    problem: str               # the problem that began, or the one that ended
    since: float               # when that problem began


@dataclasses.dataclass(frozen=True)
class Undelivered:
    """A message one channel did not take; `since` is its first attempt."""
    channel: str
    subject: str
    text: str
    document: dict
    since: float

    def as_json(self) -> dict:
        return dataclasses.asdict(self)


def read_state(data) -> dict:
    """alerts.json -> {subject: [problem, since]}; anything malformed is dropped."""
    out = {}
    for subject, value in mapping(mapping(data).get("subjects")).items():
        value = sequence(value)
        if len(value) == 2 and isinstance(value[0], str) and value[0]:
            out[str(subject)] = [value[0], number(value[1])]
    return out


def read_undelivered(data, channels: tuple, now: float) -> tuple:
    """alerts.json -> (messages to try again, messages given up: older than RETRY_FOR), oldest first.
    Malformed entries, and those of a channel no longer configured, are dropped."""
    keep: list = []
    expired: list = []
    for entry in sequence(mapping(data).get("undelivered")):
        entry = mapping(entry)
        message = Undelivered(str(entry.get("channel", "")), str(entry.get("subject", "")),
                              str(entry.get("text", "")), mapping(entry.get("document")), number(entry.get("since")))
        if message.channel in channels and message.subject and message.since > 0:
            (keep if now - message.since < RETRY_FOR else expired).append(message)
    return keep, expired


def bounded(messages: list) -> tuple:
    """(the newest MAX_UNDELIVERED of `messages`, the older ones given up)."""
    cut = max(0, len(messages) - MAX_UNDELIVERED)
    return messages[cut:], messages[:cut]


def read_pinged(data) -> float:
    """alerts.json -> the end of the last good pass whose ping was delivered (0: none)."""
    return number(mapping(data).get("pinged"))


def state_document(state: dict, now: float, undelivered: list | tuple = (), pinged: float = 0.0) -> dict:
    return {"schema": 1, "updated": round(now, 3), "subjects": state,
            "undelivered": [message.as_json() for message in undelivered], "pinged": pinged}
