"""The webhook's presets and the auth header file."""
import json

import pytest

from ethoscope_rsync.alerts import presets

DOC = {"text": "subject\n\n`ETHOSCOPE_004` failing", "title": "ethoscope backup: PROBLEM: ETHOSCOPE_004 é",
       "message": "ETHOSCOPE_004 failing", "event": "alert", "changes": []}


def test_generic_and_slack():
    url, body, headers = presets.request("generic", "http://h/x", DOC)
    assert url == "http://h/x" and json.loads(body) == DOC and headers["Content-Type"].startswith("application/json")
    url, body, headers = presets.request("slack", "http://h/x", DOC)
    assert json.loads(body) == {"text": DOC["text"]}


def test_ntfy_plain_text_and_headers():
    url, body, headers = presets.request("ntfy", "https://ntfy.sh/lab", DOC)
    assert body == b"ETHOSCOPE_004 failing" and headers["Content-Type"].startswith("text/plain")
    assert headers["Title"] == "ethoscope backup: PROBLEM: ETHOSCOPE_004 ?" and headers["Priority"] == "high"
    recovered = presets.request("ntfy", "https://ntfy.sh/lab", dict(DOC, event="recovery"))[2]
    assert recovered["Priority"] == "default" and recovered["Tags"] == "white_check_mark"


def test_healthchecks_fail_and_recover():
    assert presets.request("healthchecks", "https://hc-ping.com/u/", DOC)[0] == "https://hc-ping.com/u/fail"
    url = presets.request("healthchecks", "https://hc-ping.com/u", dict(DOC, event="recovery"))[0]
    assert url == "https://hc-ping.com/u"


def test_auth_file(tmp_path):
    assert presets.auth_header(None) == {}
    f = tmp_path / "auth"
    f.write_text("Authorization: Basic dXNlcjpwYXNz\n")
    assert presets.auth_header(f) == {"Authorization": "Basic dXNlcjpwYXNz"}
    f.write_text("tk_abc123\nignored\n")
    assert presets.auth_header(f) == {"Authorization": "Bearer tk_abc123"}
    f.write_text("X-Token: a\r\nInjected: b")
    assert presets.auth_header(f) == {"X-Token": "a"}                 # the first line only: nothing injected
    for bad in ("two words token", "Name:\tvalue\x01", ""):
        f.write_text(bad)
        with pytest.raises(presets.AuthFileError):
            presets.auth_header(f)
    with pytest.raises(presets.AuthFileError, match="cannot read"):
        presets.auth_header(tmp_path / "missing")
