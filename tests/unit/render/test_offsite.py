"""The second copy in /status, /metrics, the page and `ethoscope-backup status`: additive, shown only
when there is one, with its lag, size, result and check."""
import re

import pytest

from tests.fixtures.status import NOW, build, example_pass
from ethoscope_rsync.render import offsite as render_offsite
from ethoscope_rsync.render import terminal, upstream as render
from ethoscope_rsync.state.offsite import Check, OffsiteState, Snapshot, attach

DAY = 86400.0
SENT = OffsiteState(repository="sftp:backup@nas:/srv/ethoscope", started=NOW - 7200, ended=NOW - 7000, outcome="ok",
                    message="snapshot 1234abcd", last=Snapshot("1234abcd", NOW - 7200, 120, 5 << 30, 300 << 20, 200.0),
                    repository_bytes=4 << 30, held_back=1, held_examples=["results/x.db"],
                    check=Check(NOW - DAY, "3/12", True, "no errors were found"), alert_after=2.0)


@pytest.fixture(scope="module")
def documents():
    return build(example_pass())


def test_status_has_the_second_copy_only_when_there_is_one(documents):
    status, history = documents
    assert "offsite" not in render.status_document(status, history, NOW, DAY, 14.0)
    doc = render.status_document(status, attach(history, SENT.to_json()), NOW, DAY, 14.0)["offsite"]
    assert doc["snapshot"]["id"] == "1234abcd" and doc["snapshot"]["bytes"] == 5 << 30
    assert (doc["lag_seconds"], doc["lag_human"], doc["old"], doc["result"]) == (7200.0, "2.0 h", False, "ok")
    assert doc["repository_human"] == "4.0 GB" and doc["held_back"] == 1 and doc["check"]["share"] == "3/12"
    with_copy = render.status_document(status, attach(history, SENT.to_json()), NOW, DAY, 14.0)
    without = render.status_document(status, history, NOW, DAY, 14.0)
    assert {k: v for k, v in with_copy.items() if k != "offsite"} == without          # additive


def test_metrics(documents):
    status, history = documents
    text = render.render_metrics(status, attach(history, SENT.to_json()), NOW, DAY, 14.0)
    assert "ethoscope_backup_offsite_lag_seconds 7200\n" in text
    assert 'ethoscope_backup_offsite_last_result{result="ok"} 1\n' in text
    assert "ethoscope_backup_offsite_snapshot_bytes %d\n" % (5 << 30) in text
    assert "ethoscope_backup_offsite_old 0\n" in text and "ethoscope_backup_offsite_check_ok 1\n" in text
    assert "offsite" not in render.render_metrics(status, history, NOW, DAY, 14.0)
    never = OffsiteState(repository="/r", outcome="failed", problem="wrong password", failures=3, alert_after=2.0)
    text = render.render_metrics(status, attach(history, never.to_json()), NOW, DAY, 14.0)
    assert "ethoscope_backup_offsite_lag_seconds" in text
    assert not re.search(r"^ethoscope_backup_offsite_lag_seconds ", text, re.M)
    assert "ethoscope_backup_offsite_failures 3\n" in text and "ethoscope_backup_offsite_old 1\n" in text


def test_terminal_and_page(documents):
    status, history = documents
    lines = terminal.terminal_status(status, attach(history, SENT.to_json()), NOW, DAY, 14.0)
    assert lines[-1].startswith("second copy sftp:backup@nas:/srv/ethoscope: newest snapshot 1234abcd")
    assert "(2.0 h ago), 5.0 GB; last run ok; repository 4.0 GB; 1 database(s) held back" in lines[-1]
    page = render.render_html(status, attach(history, SENT.to_json()), NOW, DAY, 14.0)
    assert '<h2>Second copy</h2><p class="dest " id="offsite">' in page
    failed = OffsiteState(repository="/r<script>", outcome="failed", problem="repository full", message="no space",
                          last=SENT.last, alert_after=2.0)
    page = render.render_html(status, attach(history, failed.to_json()), NOW, DAY, 14.0)
    assert 'class="dest warn"' in page and "<script>" not in page
    assert "last run failed: repository full: no space" in page
    assert "Second copy" not in render.render_html(status, history, NOW, DAY, 14.0)


def test_renderings_change_when_the_copy_turns_old_or_a_run_may_be_gone(documents):
    status, history = documents
    turns_old = SENT.last.time + 2 * DAY
    assert render.next_change(status, attach(history, SENT.to_json()), NOW, DAY) <= turns_old
    assert render_offsite.changes(SENT, NOW) == [turns_old]
    assert render_offsite.changes(OffsiteState(outcome="running"), NOW) == [NOW + render_offsite.RUNNING_RECHECK]
    assert render_offsite.changes(None, NOW) == []
