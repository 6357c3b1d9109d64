"""Fake ethoscope node server: answers ``GET /devices`` like the upstream node.

Runs as its own process (``/usr/bin/python3 -m tests.lab.nodeserver --state FILE --bind IP --port N``).
Its behaviour comes from a JSON state file that the lab rewrites atomically::

    {"mode": "ok", "devices": {ID: {...}}, "extra": [{...}, ...]}

Modes: ok, garbage, html, http500, truncated, slow:SECONDS, empty, down (stop listening).
"""
import argparse
import errno
import json
import os
import signal
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

STATE = {"path": None}


def read_state():
    try:
        with open(STATE["path"]) as f:
            return json.load(f)
    except (OSError, ValueError):
        return {"mode": "ok", "devices": {}, "extra": []}


def devices_body(state):
    body = dict(state.get("devices", {}))
    for i, extra in enumerate(state.get("extra", [])):
        key = extra.get("id") if isinstance(extra, dict) else None
        if not isinstance(key, str) or not key or key in body:
            key = "extra_%d" % i
        body[key] = extra
    return json.dumps(body, indent=1).encode()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "FakeEthoscopeNode/1.0"

    def log_message(self, fmt, *args):
        sys.stderr.write("%s %s\n" % (time.strftime("%H:%M:%S"), fmt % args))

    def _send(self, code, body, ctype="application/json"):
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)
        self.close_connection = True

    def do_GET(self):
        state = read_state()
        mode = str(state.get("mode", "ok"))
        path = self.path.split("?", 1)[0].rstrip("/") or "/"
        if mode.startswith("slow:"):
            time.sleep(float(mode.split(":", 1)[1]))
            mode = "ok"
        if path not in ("/devices", "/devices_list"):
            if path == "/":
                return self._send(200, b"<html><body>fake ethoscope node</body></html>", "text/html")
            return self._send(404, b'{"error": "not found"}')
        if mode in HOSTILE:
            return HOSTILE[mode](self, devices_body(state))
        if mode == "garbage":
            return self._send(200, os.urandom(512))
        if mode == "html":
            return self._send(200, b"<!DOCTYPE html><html><head><title>Ethoscope node</title></head>"
                                   b"<body><h1>Login required</h1></body></html>", "text/html; charset=utf-8")
        if mode == "http500":
            return self._send(500, b"<html><body>500 Internal Server Error</body></html>", "text/html")
        if mode == "empty":
            return self._send(200, b"{}")
        body = devices_body(state)
        if mode == "truncated":
            body = body[: len(body) // 2]
        return self._send(200, body)


def _raw(handler, data, close=True):
    handler.wfile.write(data)
    handler.wfile.flush()
    handler.close_connection = close


def _drip(handler, body):
    """A valid answer, one byte a second: only an overall deadline ends it."""
    data = (b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(body)) + body
    for byte in data[:120]:
        handler.wfile.write(bytes([byte]))
        handler.wfile.flush()
        time.sleep(1.0)
    handler.close_connection = True


# Answers a node-server port might give that are not a well-formed HTTP answer (issue 11, item 2).
HOSTILE = {
    "banner": lambda h, body: _raw(h, b"SSH-2.0-OpenSSH_9.2p1 Debian-2\r\n"),
    "headers": lambda h, body: _raw(h, b"HTTP/1.1 200 OK\r\n" + b"".join(b"X-%d: y\r\n" % n for n in range(150))
                                    + b"Content-Length: %d\r\n\r\n" % len(body) + body),
    "longheader": lambda h, body: _raw(h, b"HTTP/1.1 200 OK\r\nX-Long: " + b"a" * 70000 + b"\r\n\r\n" + body),
    "chunked-truncated": lambda h, body: _raw(h, b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                                              + b"%x\r\n" % len(body) + body[:len(body) // 2]),
    "nested": lambda h, body: _raw(h, b"HTTP/1.1 200 OK\r\nContent-Length: 200000\r\n\r\n" + b"[" * 200000),
    "redirect": lambda h, body: _raw(h, b"HTTP/1.1 302 Found\r\nLocation: http://169.254.254.254/devices\r\n"
                                        b"Content-Length: 0\r\n\r\n"),
    "drip": _drip,
}


def make_server(bind, port):
    return ThreadingHTTPServer((bind, port), Handler)


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--state", required=True)
    ap.add_argument("--bind", required=True)
    ap.add_argument("--port", type=int, default=80)
    ap.add_argument("--any-port", action="store_true", help="fall back to a free port if PORT is taken")
    ap.add_argument("--ready", required=True, help="file to write the bound port into")
    args = ap.parse_args(argv)
    STATE["path"] = args.state
    ThreadingHTTPServer.daemon_threads = True

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *a: stop.set())
    signal.signal(signal.SIGINT, lambda *a: stop.set())

    try:
        server = make_server(args.bind, args.port)
    except OSError as e:
        if e.errno != errno.EADDRINUSE or not args.any_port:
            raise
        server = make_server(args.bind, 0)
    port = server.server_address[1]
    tmp = args.ready + ".tmp"
    with open(tmp, "w") as f:
        f.write(str(port))
    os.rename(tmp, args.ready)

    def serve(srv):
        srv.serve_forever(poll_interval=0.05)

    thread = threading.Thread(target=serve, args=(server,), daemon=True)
    thread.start()
    while not stop.is_set():
        down = read_state().get("mode") == "down"
        if down and server is not None:
            server.shutdown()
            server.server_close()
            thread.join()
            server = None
        elif not down and server is None:
            deadline = time.monotonic() + 10
            while True:
                try:
                    server = make_server(args.bind, port)
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.05)
            thread = threading.Thread(target=serve, args=(server,), daemon=True)
            thread.start()
        stop.wait(0.05)
    if server is not None:
        server.shutdown()
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
