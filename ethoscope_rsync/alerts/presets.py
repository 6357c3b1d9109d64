"""What the webhook receives, by ``[alert] webhook_format``, and the auth header of
``[alert] webhook_auth_file``. Pure but for reading that file.

* ``generic``: the alert's JSON document (``text`` for Slack/Mattermost, ``title``/``message``, the changes);
* ``slack``: ``{"text": ...}`` alone (Slack, Mattermost, Rocket.Chat incoming webhooks);
* ``ntfy``: the plain message as the body, ``Title``, ``Priority`` and ``Tags`` headers (ntfy's publish API);
* ``healthchecks``: the plain message POSTed to ``URL/fail`` for a problem, to ``URL`` for a recovery.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

JSON_TYPE = "application/json; charset=utf-8"
TEXT_TYPE = "text/plain; charset=utf-8"
AUTH_MAX = 4096              # bytes of the auth file read
_HEADER = re.compile(r"([A-Za-z0-9-]{1,64}):[ \t]*([\x21-\x7e][\x20-\x7e]*)")
_TOKEN = re.compile(r"[\x21-\x7e]{1,2048}")


class AuthFileError(Exception):
    """The auth file cannot be read or holds no header (the message goes without it)."""


def _ascii_line(text: str, limit: int = 200) -> str:
    """A header value: one line of printable ASCII (anything else as ?)."""
    line = " ".join(str(text).split())[:limit]
    return "".join(c if " " <= c <= "~" else "?" for c in line)


def _body(text: str) -> bytes:
    return text.encode("utf-8", "backslashreplace")


def request(fmt: str, url: str, document: dict) -> tuple:
    """(url, body bytes, headers dict) of the webhook's POST for `document` (render.alert's)."""
    if fmt == "slack":
        return (url, _body(json.dumps({"text": document.get("text", "")}, ensure_ascii=False)),
                {"Content-Type": JSON_TYPE})
    problem = document.get("event") == "alert"
    if fmt == "ntfy":
        return url, _body(document.get("message", "")), {
            "Content-Type": TEXT_TYPE, "Title": _ascii_line(document.get("title", "")),
            "Priority": "high" if problem else "default", "Tags": "warning" if problem else "white_check_mark"}
    if fmt == "healthchecks":
        target = url.rstrip("/") + "/fail" if problem else url
        return target, _body(document.get("message", "")), {"Content-Type": TEXT_TYPE}
    return url, _body(json.dumps(document, ensure_ascii=False)), {"Content-Type": JSON_TYPE}


def auth_header(path: Path | None) -> dict:
    """{name: value} from the auth file's first line ("Name: value", or a bare token sent as a bearer
    token); {} without a file. AuthFileError when it cannot be read or its line is neither."""
    if path is None:
        return {}
    try:
        with open(path, "rb") as f:
            first = f.read(AUTH_MAX).decode("utf-8", "replace").splitlines()
    except OSError as error:
        raise AuthFileError(f"cannot read {path}: {error.strerror or error}") from None
    line = first[0].strip() if first else ""
    header = _HEADER.fullmatch(line)
    if header:
        return {header.group(1): header.group(2).rstrip()}
    if _TOKEN.fullmatch(line):
        return {"Authorization": "Bearer " + line}
    raise AuthFileError(f"{path}: its first line is neither \"Name: value\" nor a token")
