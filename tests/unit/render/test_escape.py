"""One escaping function per medium, each fed hostile device text: nothing reaches a person as control
characters, markup, mentions or links."""
import pytest

from ethoscope_rsync.render import escape

HOSTILE = ("ETHOSCOPE_<b>9</b>\x1b]0;owned\x07\x1b[2J\r\nBcc: evil@example.org\u202e"
           " <!channel> @here <https://evil.example|click> [docs](https://evil.example) `x` & \udcff")


@pytest.mark.parametrize("medium", [escape.terminal, escape.mail, escape.chat, escape.html])
def test_no_control_character_or_second_line_gets_through(medium):
    out = medium(HOSTILE)
    assert out.isprintable() and "\n" not in out and "\x1b" not in out and "\u202e" not in out
    assert "\\x1b" in out and "\\u202e" in out and "\\udcff" in out    # shown, not obeyed
    assert len(medium("x" * 1000, 100)) < 140 and "more characters" in medium("x" * 1000, 100)


def test_chat_markup_is_inert():
    out = escape.chat(HOSTILE)
    assert out.startswith("`") and out.endswith("`") and out.count("`") == 2     # one code span
    assert "<" not in out and ">" not in out and "&lt;!channel&gt;" in out and "&amp;" in out
    assert "ˋxˋ" in out


def test_html_is_text():
    out = escape.html(HOSTILE)
    assert "<" not in out and ">" not in out and '"' not in escape.html('a"b') and "&lt;b&gt;9" in out


def test_text_already_escaped_is_not_doubled():
    assert escape.terminal("ssh: \\udcff refused") == "ssh: \\udcff refused"
    assert escape.terminal("plain name") == "plain name"
