"""When a second copy is due: pure decisions from its state, the good passes and [offsite]."""
import pytest

from ethoscope_rsync.offsite import schedule
from ethoscope_rsync.state.offsite import OffsiteState, Snapshot

NOW = 1_800_000_000.0
DAY = 86400.0


def state(age=None, outcome="ok", ended_ago=None, good_passes=0, pruned=0.0, next_group=1, forgotten=1, forgot=0.0):
    last = Snapshot("abcd1234", NOW - age, 1, 1, 1, 1.0) if age is not None else None
    ended = NOW - (ended_ago if ended_ago is not None else (age or 0))
    return OffsiteState(last=last, outcome=outcome, ended=ended, good_passes=good_passes, pruned=pruned,
                        next_group=next_group, forgotten=forgotten, forgot=forgot)


@pytest.mark.parametrize("record, interval, after, passes, due", [
    (state(), DAY, 0, 0, "no second copy yet"),
    (state(age=DAY - 60), DAY, 0, 0, ""),
    (state(age=DAY + 60), DAY, 0, 0, "the newest snapshot is 86460s old ([offsite] interval 86400s)"),
    (state(age=600, good_passes=10), DAY, 12, 21, ""),
    (state(age=600, good_passes=10), DAY, 12, 22, "12 good passes since the newest snapshot"),
    (state(age=600, good_passes=10), 0, 0, 500, ""),                        # neither by time nor by passes
    (state(age=10 * DAY, outcome="failed", ended_ago=1800), DAY, 0, 0, ""),  # retried after an hour
    (state(age=10 * DAY, outcome="failed", ended_ago=3700), DAY, 0, 0, "the last run failed 3700s ago"),
    (state(age=10 * DAY, outcome="interrupted", ended_ago=3700), DAY, 0, 0, "the last run failed 3700s ago"),
    (state(age=600, outcome="failed", ended_ago=700), 600, 0, 0, "the last run failed 700s ago"),   # short interval
])
def test_due(record, interval, after, passes, due):
    assert schedule.due(record, NOW, interval, after, passes) == due


def test_retention_prune_and_check_share():
    assert schedule.retain_due(state(), NOW) and schedule.retain_due(state(forgot=NOW - DAY), NOW)
    assert not schedule.retain_due(state(forgot=NOW - 3600), NOW)             # once a day
    assert schedule.prune_due(state(pruned=NOW - 8 * DAY), NOW, 7 * DAY)
    assert not schedule.prune_due(state(pruned=NOW - 6 * DAY), NOW, 7 * DAY)
    assert not schedule.prune_due(state(pruned=NOW - 8 * DAY, forgotten=0), NOW, 7 * DAY)   # nothing to free
    assert not schedule.prune_due(state(), NOW, 0)
    assert [schedule.next_share(state(next_group=g), 3) for g in (1, 2, 3, 9, 0)] == [
        (1, 2), (2, 3), (3, 1), (1, 2), (1, 2)]
