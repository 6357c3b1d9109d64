"""The alert channels over real sockets and processes: a webhook listener, a stand-in sendmail, an
SMTP server. A broken channel is a warning, never an exception."""
import json
import os
import socket

from ethoscope_rsync.alerts import channels as notify
from ethoscope_rsync.config.load import load_config
from tests.listeners import Smtp, Webhook, install_sendmail, mails


def test_webhook_gets_one_json_post():
    with Webhook() as hook:
        assert notify.webhook(hook.url, {"text": "ETHOSCOPE_004 failing", "n": 1}, timeout=5) == ""
    (request,) = hook.requests
    assert request["path"] == "/hook" and request["headers"]["Content-Type"] == "application/json; charset=utf-8"
    assert json.loads(request["body"]) == {"text": "ETHOSCOPE_004 failing", "n": 1}


def test_webhook_redirect_is_not_followed_and_errors_are_words():
    with Webhook() as elsewhere, Webhook(answer=(307, {})) as hook:
        hook.answer = (307, {"Location": elsewhere.url})
        problem = notify.webhook(hook.url, {"text": "x"}, timeout=5)
    assert problem.startswith("HTTP 307") and len(hook.requests) == 1 and elsewhere.requests == []
    with Webhook(answer=(500, {})) as hook:
        assert notify.webhook(hook.url, {"text": "x"}, timeout=5).startswith("HTTP 500")
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    assert "refused" in notify.webhook("http://127.0.0.1:%d/" % port, {"text": "x"}, timeout=5).lower()


def test_webhook_that_never_answers_is_given_up_on():
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(1)
        url = "http://127.0.0.1:%d/" % silent.getsockname()[1]
        problem = notify.webhook(url, {"text": "x"}, timeout=1)
    assert "timed out" in problem.lower(), problem


def test_sendmail_gets_the_message_and_the_recipients(tmp_path, monkeypatch):
    install_sendmail(tmp_path / "bin", tmp_path / "spool")
    monkeypatch.setenv("PATH", "%s:%s" % (tmp_path / "bin", os.environ["PATH"]))
    assert notify.mail(("lab@example.org", "x.y@lab"), "ethoscope backup: PROBLEM: ETHOSCOPE_004",
                       "ETHOSCOPE_004: backup failing\n", timeout=10) == ""
    (mail,) = mails(tmp_path / "spool")
    assert mail.startswith("ARGS: -oi -- lab@example.org x.y@lab\n")
    assert "Subject: ethoscope backup: PROBLEM: ETHOSCOPE_004" in mail and "ETHOSCOPE_004: backup failing" in mail
    assert "Auto-Submitted: auto-generated" in mail


def test_a_hostile_subject_cannot_add_headers(tmp_path, monkeypatch):
    install_sendmail(tmp_path / "bin", tmp_path / "spool")
    monkeypatch.setenv("PATH", "%s:%s" % (tmp_path / "bin", os.environ["PATH"]))
    assert notify.mail(("lab@example.org",), "x\r\nBcc: evil@example.org\n", "body", timeout=10) == ""
    (mail,) = mails(tmp_path / "spool")
    assert "\nBcc:" not in mail and "Subject: x Bcc: evil@example.org" in mail


def test_when_sendmail_cannot_queue_smtp_on_localhost_takes_the_message(tmp_path, monkeypatch):
    install_sendmail(tmp_path / "bin", tmp_path / "spool", exit_code=75)     # like postdrop in a sandbox
    monkeypatch.setenv("PATH", "%s:%s" % (tmp_path / "bin", os.environ["PATH"]))
    with Smtp() as smtp:
        assert notify.mail(("lab@example.org",), "subject", "body text\n", timeout=10, smtp=smtp.address) == ""
    (message,) = smtp.messages
    assert message["to"] == ["lab@example.org"] and b"body text" in message["data"]


def test_no_channel_works_is_a_warning_not_an_exception(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))                  # no sendmail anywhere on PATH
    monkeypatch.setattr(notify, "SENDMAIL", str(tmp_path / "none"))
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    problem = notify.mail(("lab@example.org",), "s", "b", timeout=5, smtp=("127.0.0.1", port))
    assert problem.startswith("no sendmail (install an MTA) and SMTP on 127.0.0.1:%d" % port)
    conf = tmp_path / "backup.conf"
    conf.write_text('[alert]\nmail_to = "lab@example.org"\nwebhook = http://127.0.0.1:%d/x\ntimeout = 2\n' % port)
    config = load_config(conf)
    monkeypatch.setattr(notify, "SMTP_PORT", port)
    failures = notify.send(config, "s", "b", {"text": "b"})
    assert list(failures) == ["mail", "webhook"] and failures["mail"].startswith("mail to lab@example.org: ")
    assert failures["webhook"].startswith("webhook 127.0.0.1: ")
    assert list(notify.send(config, "s", "b", {"text": "b"}, only=("webhook",))) == ["webhook"]
