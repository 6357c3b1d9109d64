"""Where an alert goes: the journal (always), mail, a webhook. A channel that fails is a warning.

* **Journal**: one entry per change, priority err for a problem, info for a recovery, with
  ``DEVICE_ID``/``DEVICE_NAME`` for devices and ``ALERT`` (the problem, or ``recovered``).
* **Mail** (``[alert] mail_to``): handed to ``sendmail`` (first on PATH, else /usr/sbin/sendmail)
  as ``sendmail -oi -- ADDRESS...``. MTAs whose sendmail must gain a group or user id to queue mail
  (postfix, exim4) cannot do so from the alert service's sandbox (NoNewPrivileges=), so when
  sendmail fails the message is submitted over SMTP to the MTA on localhost:25 instead.
* **Webhook** (``[alert] webhook``): one POST of a small JSON document; ``[alert] timeout`` seconds
  at most, only http/https, redirects never followed, at most MAX_ANSWER bytes of the answer read.
"""
from __future__ import annotations

import email.message
import email.utils
import http.client
import json
import logging
import shutil
import smtplib
import socket
import urllib.error
import urllib.parse
import urllib.request

from ethoscope_rsync.system import execute
from ethoscope_rsync.system.logs import log

SENDMAIL = "/usr/sbin/sendmail"
SMTP_HOST, SMTP_PORT = "localhost", 25
MAX_BODY = 32768          # bytes of a message or a webhook document
MAX_ANSWER = 65536        # bytes of a webhook's answer read


def journal(entries: list) -> None:
    """`entries`: (problem, message, fields); problem "" for a recovery."""
    for problem, message, fields in entries:
        log.log(logging.ERROR if problem else logging.INFO, "%s", message,
                extra=dict(fields, ALERT=problem or "recovered"))


def _sendmail_path() -> str | None:
    return shutil.which("sendmail") or (SENDMAIL if shutil.which(SENDMAIL) else None)


def _utf8(text: str) -> str:
    """Bytes a device sent that are not UTF-8 (kept as surrogates) as \\udcXX: they cannot be sent."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def mail_message(addresses: tuple, subject: str, body: str) -> email.message.EmailMessage:
    subject, body = _utf8(subject), _utf8(body)
    message = email.message.EmailMessage()
    message["To"] = ", ".join(addresses)
    message["Subject"] = " ".join(subject.split())[:200]     # one line, whatever a device named itself
    message["Date"] = email.utils.formatdate(localtime=True)
    message["Message-ID"] = email.utils.make_msgid(domain=socket.gethostname() or "localhost")
    message["Auto-Submitted"] = "auto-generated"
    message.set_content(body[:MAX_BODY])
    return message


def mail(addresses: tuple, subject: str, body: str, timeout: float,
         smtp: tuple = (SMTP_HOST, SMTP_PORT)) -> str:
    """Send; '' when done, else what went wrong (for a warning)."""
    message = mail_message(addresses, subject, body)
    problems = []
    sendmail = _sendmail_path()
    if sendmail:
        result = execute.run((sendmail, "-oi", "--", *addresses), timeout=timeout, input=bytes(message))
        if result.returncode == 0:
            return ""
        problems.append(f"{sendmail} exited with {result.returncode}: {result.last_error_line[:200]}")
    try:
        with smtplib.SMTP(smtp[0], smtp[1], timeout=timeout) as server:
            server.send_message(message, to_addrs=list(addresses))
        return ""
    except (OSError, smtplib.SMTPException) as error:
        problems.append(f"SMTP on {smtp[0]}:{smtp[1]}: {error}")
    return "; ".join(problems) if sendmail else f"no sendmail (install an MTA) and {problems[0]}"


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """A redirect is an error: a webhook must answer where it was configured."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        return None


def webhook(url: str, document: dict, timeout: float) -> str:
    """POST `document` as JSON to `url`; '' on a 2xx answer, else what went wrong."""
    body = json.dumps(document, ensure_ascii=False).encode("utf-8", "backslashreplace")
    if len(body) > MAX_BODY:
        raise ValueError(f"webhook document of {len(body)} bytes")
    request = urllib.request.Request(url, data=body, method="POST", headers={
        "Content-Type": "application/json; charset=utf-8", "User-Agent": "ethoscope-backup"})
    if request.type not in ("http", "https"):
        return f"not an http(s) URL: {request.type}"
    opener = urllib.request.build_opener(_NoRedirect())
    try:
        with opener.open(request, timeout=timeout) as answer:
            answer.read(MAX_ANSWER)
            return ""
    except urllib.error.HTTPError as error:
        return f"HTTP {error.code} {error.reason}"[:200]
    except (OSError, http.client.HTTPException, ValueError) as error:
        return f"{type(error).__name__}: {error}"[:200]


MAIL, WEBHOOK = "mail", "webhook"


def channels(config) -> tuple:
    """The channels besides the journal that `config` sets up."""
    return tuple(name for name, wanted in ((MAIL, config.alert.mail_to), (WEBHOOK, config.alert.webhook)) if wanted)


def send(config, subject: str, body: str, document: dict, only: tuple | None = None) -> dict:
    """Mail and webhook, as configured (or those of them in `only`); returns {channel: what went
    wrong} for the channels that failed, each also warned about."""
    failures = {}
    for channel in channels(config):
        if only is not None and channel not in only:
            continue
        if channel == MAIL:
            problem = mail(config.alert.mail_to, subject, body, config.alert.timeout)
            where = f"mail to {', '.join(config.alert.mail_to)}"
        else:
            problem = webhook(config.alert.webhook, document, config.alert.timeout)
            where = f"webhook {urllib.parse.urlsplit(config.alert.webhook).hostname}"
        if problem:
            failures[channel] = f"{where}: {problem}"
            log.warning("alert not delivered: %s", failures[channel])
    return failures
