"""When the second copy runs: pure decisions from its state, the history and ``[offsite]``.

``ethoscope-backup-offsite.timer`` starts ``ethoscope-backup offsite --if-due`` every 15 minutes; the
run goes on only when one is due, so that the schedule lives in backup.conf alone:

* never sent yet;
* ``interval`` seconds since the newest snapshot (0: not by time);
* ``after_passes`` good passes (every device backed up) since the newest snapshot (0: not by passes);
* after a failed run, once RETRY_AFTER has passed (or its interval, if that is shorter), so that a
  repository that is down is tried again each hour, not every 15 minutes, and not only tomorrow.

After a snapshot, the retention runs at most once a day and a prune only when it has something to
free: each costs a restic run that reads the repository's index.
"""
from __future__ import annotations

from ethoscope_rsync.state.offsite import FAILED, INTERRUPTED, OffsiteState

RETRY_AFTER = 3600.0        # seconds between two attempts after a failure


def due(state: OffsiteState, now: float, interval: float, after_passes: int, good_passes: int) -> str:
    """Why a run is due now ('' when it is not)."""
    last = state.last.time if state.last else 0.0
    if state.outcome in (FAILED, INTERRUPTED) and state.ended:
        retry = min(RETRY_AFTER, interval) if interval else RETRY_AFTER
        return f"the last run failed {now - state.ended:.0f}s ago" if now - state.ended >= retry else ""
    if not last:
        return "no second copy yet"
    if interval and now - last >= interval:
        return f"the newest snapshot is {now - last:.0f}s old ([offsite] interval {interval:.0f}s)"
    if after_passes and good_passes - state.good_passes >= after_passes:
        return f"{good_passes - state.good_passes} good passes since the newest snapshot"
    return ""


RETAIN_EVERY = 86400.0      # seconds between two retentions: it keeps days, weeks and months


def retain_due(state: OffsiteState, now: float) -> bool:
    """The retention (restic forget) runs after the first snapshot of a day, not after every one:
    the snapshots of one day it would keep one of are forgotten together the next day."""
    return now - state.forgot >= RETAIN_EVERY


def prune_due(state: OffsiteState, now: float, prune_interval: float) -> bool:
    """A prune is due once `prune_interval` seconds have passed since the last one (0: never) and
    snapshots were forgotten since (else it has nothing to free)."""
    return bool(prune_interval) and state.forgotten > 0 and now - state.pruned >= prune_interval


def next_share(state: OffsiteState, groups: int) -> tuple:
    """(the group of the data the check reads now, the next one), rotating through 1..groups."""
    group = state.next_group if 1 <= state.next_group <= groups else 1
    return group, group % groups + 1
