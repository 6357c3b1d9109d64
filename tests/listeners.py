"""Real receivers for the alert channels in tests: an HTTP listener recording POSTs (a webhook),
a minimal SMTP server recording messages, and a stand-in ``sendmail`` script writing what it got."""
import http.server
import json
import socketserver
import threading
from pathlib import Path


class _Served:
    """Serves `self.server` in a thread for the duration of a with block."""

    def __enter__(self):
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()


class Webhook(_Served):
    """An HTTP server on 127.0.0.1 (a free port) recording every request; `answer` (status, headers)
    chooses the reply. Use as a context manager."""

    def __init__(self, answer=(204, {})):
        self.requests, self.answer = [], answer
        owner = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                owner.requests.append({"path": self.path, "headers": dict(self.headers), "body": body})
                status, headers = owner.answer
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def do_GET(self):          # a dead-man's switch's ping
                owner.requests.append({"method": "GET", "path": self.path, "headers": dict(self.headers), "body": b""})
                self.send_response(owner.answer[0])
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = "http://127.0.0.1:%d/hook" % self.server.server_address[1]

    def documents(self):
        return [json.loads(r["body"]) for r in self.requests]


class Smtp(_Served):
    """Just enough SMTP (HELO/EHLO, MAIL, RCPT, DATA, QUIT) to receive messages on 127.0.0.1."""

    def __init__(self):
        self.messages = []
        owner = self

        class Handler(socketserver.StreamRequestHandler):
            def handle(self):
                self.say("220 test ESMTP")
                envelope = {"from": "", "to": [], "data": b""}
                while True:
                    line = self.rfile.readline()
                    if not line:
                        return
                    verb = line.decode("ascii", "replace").strip().upper()
                    if verb.startswith(("HELO", "EHLO")):
                        self.say("250 test")
                    elif verb.startswith("MAIL FROM:"):
                        envelope["from"] = line.decode().strip()[10:]
                        self.say("250 ok")
                    elif verb.startswith("RCPT TO:"):
                        envelope["to"].append(line.decode().strip()[8:].strip("<> "))
                        self.say("250 ok")
                    elif verb == "DATA":
                        self.say("354 go on")
                        data = b""
                        for data_line in iter(self.rfile.readline, b""):
                            if data_line in (b".\r\n", b".\n"):
                                break
                            data += data_line
                        envelope["data"] = data
                        owner.messages.append(dict(envelope))
                        self.say("250 queued")
                    elif verb == "QUIT":
                        self.say("221 bye")
                        return
                    else:
                        self.say("250 ok")

            def say(self, text):
                self.wfile.write(text.encode() + b"\r\n")

        self.server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.address = self.server.server_address


def sendmail_script(folder: Path, exit_code: int = 0) -> str:
    """A stand-in sendmail: each call writes its arguments and the message to FOLDER/mail-N."""
    return f"""#!/bin/sh
n=$(ls {folder} | grep -c '^mail-')
{{ echo "ARGS: $*"; cat; }} > {folder}/mail-$n
exit {exit_code}
"""


def install_sendmail(bin_dir: Path, spool: Path, exit_code: int = 0) -> Path:
    bin_dir.mkdir(parents=True, exist_ok=True)
    spool.mkdir(parents=True, exist_ok=True)
    script = bin_dir / "sendmail"
    script.write_text(sendmail_script(spool, exit_code))
    script.chmod(0o755)
    return script


def mails(spool: Path) -> list:
    return [p.read_text(errors="replace") for p in sorted(spool.glob("mail-*"))]
