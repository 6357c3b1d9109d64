"""An alert storm (a whole lab failing at once) makes one bounded message per channel, counting the rest
by problem with their first names; hostile device names are escaped for each medium."""
import json

from ethoscope_rsync.render import alert as render_alert
from ethoscope_rsync.state.alerts import FAILED, STALE, Change, Condition

NOW = 1_800_000_000.0
LIMIT = 32768


def change(i, problem=FAILED, name=None, detail="connection timed out " + "x" * 900):
    mid = "%032x" % i
    condition = Condition("device:" + mid, problem, name or "ETHOSCOPE_%03d" % i, NOW - 3600, detail, mid, NOW - 600)
    return Change(condition, False, problem, NOW - 600)


def test_a_hundred_failing_devices_make_one_bounded_message():
    changes = [change(i) for i in range(1, 99)] + [change(99, STALE), change(100, STALE)]
    subject, text, doc = render_alert.messages(changes, "node1", NOW, "http://node1:8093/", LIMIT)
    assert len(subject) < 200 and subject.startswith("ethoscope backup on node1: 100 PROBLEMS: ETHOSCOPE_001")
    size = len(json.dumps(doc, ensure_ascii=False).encode())
    assert size <= LIMIT and len(text.encode()) <= LIMIT
    assert doc["total"] == 100 and doc["counts"] == {FAILED: 98, STALE: 2} and len(doc["changes"]) <= 10
    assert "ETHOSCOPE_001 (" in text and "... and 90 more: 88 failed (ETHOSCOPE_011, " in text
    assert "2 stale (ETHOSCOPE_099, ETHOSCOPE_100)" in text and ", ...)" in text    # 30 names, then dots
    assert all(len(c["detail"]) < 400 for c in doc["changes"])


def test_the_document_shrinks_until_it_fits():
    changes = [change(i, name="ETHOSCOPE_%03d" % i + "é" * 60) for i in range(1, 101)]
    for limit in (LIMIT, 12000, 6000, 3000):
        _, _, doc = render_alert.messages(changes, "node1", NOW, "http://n/", limit)
        assert len(json.dumps(doc, ensure_ascii=False).encode()) <= limit, limit


def test_hostile_names_are_escaped_per_medium():
    evil = change(1, name="ETHOSCOPE_001 <!channel> [x](https://evil.example)\x1b[2J\nBcc: a@b",
                  detail="lost\r\n@here <https://evil.example|docs>")
    subject, text, doc = render_alert.messages([evil], "node1", NOW, "http://n/", LIMIT)
    assert "\n" not in subject and "\x1b" not in subject and "\x1b" not in text
    assert "\nBcc:" not in text and "\\x0aBcc" in text          # mail: plain, one line per text
    chat = doc["text"]
    assert "<!channel>" not in chat and "<https://evil.example|docs>" not in chat
    assert "`ETHOSCOPE_001 &lt;!channel&gt; [x](https://evil.example)\\x1b[2J" in chat
    assert doc["message"] == text and doc["title"] == subject     # ntfy: the plain text
    (_, entry, _), = render_alert.journal_entries([evil], NOW)
    assert "\x1b" not in entry and "\nBcc" not in entry
