"""The alert channels over real sockets and processes: a webhook listener, a stand-in sendmail, an
SMTP server. A broken channel is a warning, never an exception."""
import json
import os
import socket
import threading
import time

import pytest

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


class Dripping:
    """A webhook endpoint that answers a byte every 0.2 s for a minute: never silent for as long as
    a read's timeout, so only an overall deadline ends the exchange."""

    def __init__(self, start: bytes):
        self.start, self.stop = start, threading.Event()
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.url = "http://127.0.0.1:%d/hook" % self.sock.getsockname()[1]
        self.thread = threading.Thread(target=self._serve, daemon=True)

    def _serve(self):
        conn, _ = self.sock.accept()
        with conn:
            conn.recv(65536)
            try:
                conn.sendall(self.start)
                for _ in range(300):
                    if self.stop.wait(0.2):
                        return
                    conn.sendall(b"a")
            except OSError:          # the client cut the connection: what the deadline does
                pass

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join(10)
        self.sock.close()


@pytest.mark.parametrize("start", [b"HTTP/1.1 200 OK\r\nX-Slow: ",                           # its headers
                                   b"HTTP/1.1 200 OK\r\nContent-Length: 60000\r\n\r\n"],   # its body
                         ids=["headers", "body"])
def test_webhook_answering_a_byte_at_a_time_is_cut_at_the_deadline(start):
    with Dripping(start) as hook:
        began = time.monotonic()
        problem = notify.webhook(hook.url, {"text": "x"}, timeout=1)
        took = time.monotonic() - began
    assert problem == "timed out: no complete answer within 1 s"
    assert took < 30            # the dripping goes on for 60 s: only the deadline ends it sooner


def test_webhook_url_problems_are_words():
    assert notify.webhook("ftp://127.0.0.1/x", {"text": "x"}, timeout=1) == "not an http(s) URL: ftp"
    assert notify.webhook("http://127.0.0.1:99999/x", {"text": "x"}, timeout=1).startswith("ValueError: Port")


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
