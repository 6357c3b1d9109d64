"""Baselines for the status-service benchmark, serving the same ``/status`` bytes as ours.

- **bare CherryPy**: the framework as its documentation sets it up, tuned only where it costs
  nothing — the rendered document read once at start and returned by one handler, access log
  off, no ``pkg_resources`` at start-up; conditional GETs and gzip with CherryPy's own tools
  (``tools.etags`` with autotags, ``tools.gzip``), on cheroot with CherryPy's default 10 threads,
  socket-activated the way cheroot does it by itself (it adopts fd 3 when ``LISTEN_PID`` is set).
  ``python3 -m bench.status_baselines cherrypy PORT FILE``.
- **nginx**: one worker serving the file (and its ``.gz`` with ``gzip_static``), ETags on.
"""
from __future__ import annotations

import os
import subprocess
import sys
import time

PYTHON = "/usr/bin/python3"
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def cherrypy_command(port, body_file) -> list:
    return [PYTHON, "-m", "bench.status_baselines", "cherrypy", str(port), body_file]


def serve_bare_cherrypy(port: int, body_file: str) -> None:
    sys.modules["pkg_resources"] = None      # the same start-up saving ours has
    import cheroot.wsgi
    import cherrypy

    with open(body_file, "rb") as f:
        body = f.read()

    class Root:
        @cherrypy.expose
        def default(self, *args, **kwargs):
            cherrypy.response.headers["Content-Type"] = "application/json"
            return body

    conf = {"/": {"tools.encode.on": False, "tools.etags.on": True, "tools.etags.autotags": True,
                  "tools.gzip.on": True, "tools.gzip.mime_types": ["application/json"]}}
    cherrypy.config.update({"log.screen": False, "log.access_file": "", "log.error_file": ""})
    app = cherrypy.Application(Root(), "", config=conf)
    app.log.screen = False
    app.log.access_log.propagate = False
    server = cheroot.wsgi.Server(("127.0.0.1", port), app, numthreads=10)
    server.prepare()
    server.serve()


NGINX_CONF = """
worker_processes 1;
daemon off;
pid {d}/nginx.pid;
error_log {d}/error.log;
events {{ worker_connections 1024; }}
http {{
  access_log off;
  client_body_temp_path {d}/tmp; proxy_temp_path {d}/tmp; fastcgi_temp_path {d}/tmp;
  uwsgi_temp_path {d}/tmp; scgi_temp_path {d}/tmp;
  server {{
    listen 127.0.0.1:{port};
    location = /status {{ default_type application/json; alias {file}; gzip_static on; gzip_vary on; }}
  }}
}}
"""


def start_nginx(directory, port, body_file) -> tuple:
    """nginx serving ``body_file`` (and ``body_file.gz``) at /status → (process, ms to first answer)."""
    from bench.status_load import get, wait_listening
    os.makedirs(os.path.join(directory, "tmp"), exist_ok=True)
    conf = os.path.join(directory, "nginx.conf")
    with open(conf, "w") as f:
        f.write(NGINX_CONF.format(d=directory, port=port, file=body_file))
    t0 = time.perf_counter()
    proc = subprocess.Popen(["nginx", "-c", conf, "-p", directory], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    wait_listening(port)
    code = get(port)[0]
    if code != 200:
        raise RuntimeError("nginx answered %s" % code)
    return proc, round((time.perf_counter() - t0) * 1000, 1)


if __name__ == "__main__" and sys.argv[1:2] == ["cherrypy"]:
    serve_bare_cherrypy(int(sys.argv[2]), sys.argv[3])
