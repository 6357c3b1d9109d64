"""One escaping function per medium for text a device or the LAN sent (names, paths, error lines, a
device's stdout): whatever it holds, it reaches a person as inert text.

* :func:`terminal` — one line without control characters (terminal escapes, newlines, bidi marks
  become ``\\xNN``/``\\uNNNN``, :func:`inert`);
* :func:`mail` — the same for a plain-text mail body or subject: no line of a device's can be forged,
  no header injected;
* :func:`chat` — a chat message's markup (Slack, Mattermost, ntfy's markdown): ``&``, ``<`` and ``>``
  as entities (Slack's ``<!channel>`` and ``<URL|disguised>`` links), inside an inline code span (no
  ``@channel`` mention, ``[text](url)`` link or emphasis is read from it);
* :func:`html` — an HTML element's text or an attribute's value.

Every function takes an optional `limit` of characters kept (the rest said as cut).
"""
from __future__ import annotations

import html as _html

from ethoscope_rsync.system.logs import printable

CODE_TICK = "\u02cb"        # a backtick in a device's text would end the code span: shown as ˋ


def inert(text, limit: int | None = None) -> str:
    """`text` as one line with every character that is not printable (controls, terminal escapes,
    newlines, bidi marks, undecodable bytes) as ``\\xNN``/``\\uNNNN``, cut to `limit` characters. Unlike
    the journal's :func:`printable`, a backslash stays one: text the store already escaped is not doubled."""
    text = text if isinstance(text, str) else str(text)
    if text.isprintable():
        return text if limit is None or len(text) <= limit else \
            text[:limit] + "...(%d more characters)" % (len(text) - limit)
    return printable(text, limit).replace("\\\\", "\\")


def terminal(text, limit: int | None = None) -> str:
    return inert(text, limit)


def mail(text, limit: int | None = None) -> str:
    return inert(text, limit)


def chat(text, limit: int | None = None) -> str:
    line = inert(text, limit).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return "`%s`" % line.replace("`", CODE_TICK) if line else ""


def html(text, limit: int | None = None) -> str:
    if limit is None and type(text) is str and text.isprintable():     # the page's common case, kept cheap
        return _html.escape(text, True)
    return _html.escape(inert(text, limit), quote=True)
