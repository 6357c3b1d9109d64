"""Where an alert goes: the journal (always), mail, a webhook. A channel that fails is a warning.

* **Journal**: one entry per change, priority err for a problem, info for a recovery, with
  ``DEVICE_ID``/``DEVICE_NAME`` for devices and ``ALERT`` (the problem, or ``recovered``).
* **Mail** (``[alert] mail_to``): handed to ``sendmail`` (first on PATH, else /usr/sbin/sendmail)
  as ``sendmail -oi -- ADDRESS...``. MTAs whose sendmail must gain a group or user id to queue mail
  (postfix, exim4) cannot do so from the alert service's sandbox (NoNewPrivileges=), so when
  sendmail fails the message is submitted over SMTP to the MTA on localhost:25 instead.
* **Webhook** (``[alert] webhook``): one POST, shaped by ``[alert] webhook_format``
  (:mod:`ethoscope_rsync.alerts.presets`) with the header of ``webhook_auth_file``; ``[alert] ping_url``
  is one GET the same way (:func:`ping`). ``[alert] timeout`` seconds
  at most, for each network operation and for the whole exchange (a server that answers a byte at a
  time is cut off when the time is up), only http/https, redirects never followed, at most
  MAX_ANSWER bytes of the answer read.
"""
from __future__ import annotations

import email.message
import email.utils
import http.client
import logging
import os
import shutil
import smtplib
import socket
import threading
import urllib.parse

from ethoscope_rsync.alerts import presets
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


class _Deadline:
    """The whole of one HTTP exchange within ``seconds``: when the time is up, the connection is
    shut down, which ends a read blocked on it at once (each read's own timeout only bounds the
    wait for the next byte, not for the answer)."""

    def __init__(self, seconds: float, conn: http.client.HTTPConnection):
        self.conn, self.passed = conn, False
        self._lock = threading.Lock()
        self._timer = threading.Timer(seconds, self._cut)
        self._timer.daemon = True

    def __enter__(self) -> _Deadline:
        self._timer.start()
        return self

    def __exit__(self, *exc) -> None:
        self._timer.cancel()
        with self._lock:          # closed under the lock: a late cut never meets a reused descriptor
            self.conn.close()

    def _cut(self) -> None:
        with self._lock:
            self.passed = True
            sock = self.conn.sock
            if sock is None:      # not connected yet (connect has its own timeout) or already closed
                return
            try:          # through a duplicate: an HTTPS connection's TLS object is not touched from here
                with socket.socket(fileno=os.dup(sock.fileno())) as raw:
                    raw.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


def webhook(url: str, document: dict, timeout: float, fmt: str = "generic", auth: dict | None = None) -> str:
    """POST `document` to `url` as `fmt` ([alert] webhook_format) says, with the `auth` header;
    '' on a 2xx answer, else what went wrong."""
    url, body, headers = presets.request(fmt, url, document)
    if len(body) > MAX_BODY:         # render.alert.messages fits its documents: not sent rather than cut
        return f"document of {len(body)} bytes, over the limit of {MAX_BODY}"
    return http_request("POST", url, body, dict(headers, **(auth or {})), timeout)


def ping(url: str, timeout: float, auth: dict | None = None) -> str:
    """GET `url` (a dead-man's switch); '' on a 2xx answer, else what went wrong."""
    return http_request("GET", url, None, dict(auth or {}), timeout)


def http_request(method: str, url: str, body: bytes | None, headers: dict, timeout: float) -> str:
    """One bounded HTTP exchange (see the module's docstring); '' on a 2xx answer, else what went wrong."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https"):
        return f"not an http(s) URL: {parts.scheme}"
    target = urllib.parse.urlunsplit(("", "", parts.path or "/", parts.query, ""))
    kind = getattr(http.client, "HTTPSConnection" if parts.scheme == "https" else "HTTPConnection", None)
    if kind is None:                     # http.client was imported without ssl in this process
        return "https is not available in this process"
    try:
        conn = kind(parts.hostname or "", parts.port, timeout=timeout)
        with _Deadline(timeout, conn) as deadline:
            try:
                conn.request(method, target, body=body, headers=dict(headers, **{"User-Agent": "ethoscope-backup"}))
                answer = conn.getresponse()
                answer.read(MAX_ANSWER)
                problem = ""
            except (OSError, http.client.HTTPException) as error:
                problem = f"{type(error).__name__}: {error}"[:200]
    except ValueError as error:          # a port out of range, a host with a control character
        return f"{type(error).__name__}: {error}"[:200]
    if deadline.passed:                  # a cut answer may end without an error: it is cut all the same
        return f"timed out: no complete answer within {timeout:g} s"
    if problem:
        return problem
    if 200 <= answer.status < 300:
        return ""
    return f"HTTP {answer.status} {answer.reason}"[:200]     # a redirect too: never followed


MAIL, WEBHOOK = "mail", "webhook"


def auth_of(config) -> dict:
    """The header of [alert] webhook_auth_file; {} (and a warning) when it cannot be had."""
    try:
        return presets.auth_header(config.alert.webhook_auth_file)
    except presets.AuthFileError as error:
        log.warning("webhook sent without its auth header: %s", error)
        return {}


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
            problem = webhook(config.alert.webhook, document, config.alert.timeout, config.alert.webhook_format,
                              auth_of(config))
            where = f"webhook {urllib.parse.urlsplit(config.alert.webhook).hostname}"
        if problem:
            failures[channel] = f"{where}: {problem}"
            log.warning("alert not delivered: %s", failures[channel])
    return failures
