"""``make demo``: a simulated lab, a real backup pass with the real CLI, and the status service.

    /usr/bin/python3 -m tests.lab.demo          # bring it all up (replaces an earlier demo)
    /usr/bin/python3 -m tests.lab.demo --down   # stop the status service, remove the lab and copies

``--base``, ``--name`` and ``--listen`` let a test run one beside a user's (tests/integration/test_demo.py).
"""
import argparse
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from tests.lab import Lab

ROOT = Path(__file__).resolve().parents[2]
BASE = Path("/var/tmp/ethoscope-demo")
PYTHON = "/usr/bin/python3"
NAME = "demo"


def _stop_server(base):
    pidfile = base / "serve.pid"
    try:
        pid = int(pidfile.read_text())
        os.kill(pid, signal.SIGTERM)
    except (OSError, ValueError):
        pass
    pidfile.unlink(missing_ok=True)


def down(base=BASE, name=NAME):
    _stop_server(base)
    Lab(name=name, n_devices=0).down()
    subprocess.run(["rm", "-rf", str(base)], check=False)
    print("demo removed")


def _wait_http(url, seconds=10.0):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=1):
                return True
        except OSError:
            time.sleep(0.1)
    return False


def up(devices, chunk_mb, listen, base=BASE, name=NAME):
    down(base, name)
    base.mkdir(parents=True)
    lab = Lab(name=name, n_devices=devices, persistent=True)
    lab.up()
    for device in lab.devices:
        lab.populate(device, experiments=2, db_rows=2000, video_chunks=3, chunk_bytes=chunk_mb << 20)
    conf = base / "backup.conf"
    conf.write_text(lab.config_text(base / "results", base / "videos", base / "run" / "status.json",
                                    base / "state", base / "state" / "known_hosts")
                    + f"[transfer]\nmin_free = 0\n[status]\nlisten = {listen}\nidle_exit = 0\n")
    cli = [PYTHON, "-m", "ethoscope_rsync"]
    log = open(base / "serve.log", "w")
    server = subprocess.Popen(cli + ["serve", "-c", str(conf)], cwd=ROOT, stdout=log, stderr=log,
                              start_new_session=True)
    (base / "serve.pid").write_text(str(server.pid))
    host, port = listen.rsplit(":", 1)
    url = f"http://{'127.0.0.1' if host in ('0.0.0.0', '') else host}:{port}"
    if not _wait_http(url + "/"):
        print(f"the status service did not start; see {base / 'serve.log'}", file=sys.stderr)
        return 1
    print(f"simulated lab: {devices} ethoscopes at {lab.subnet}.x, node server {lab.node_address}")
    print(f"backing up with: {' '.join(cli)} run -c {conf}\n")
    code = subprocess.run(cli + ["run", "-c", str(conf)], cwd=ROOT).returncode
    subprocess.run(cli + ["status", "-c", str(conf)], cwd=ROOT)
    copied = sum(1 for p in (base / "videos").rglob("*") if p.is_file())
    print(f"""
pass finished with exit code {code}; {copied} video files copied.
  the copies:     find {base}/results {base}/videos -not -path '*/.ethoscope-backup*'
  the status:     curl {url}/status      (and {url}/, {url}/metrics, or open {url}/ in a browser)
  another pass:   {' '.join(cli)} run -c {conf}
  new data:       the devices' trees are under {lab.base_dir}/devices/*/ethoscope_data
  remove it all:  {PYTHON} -m tests.lab.demo --down{'' if base == BASE else f' --base {base} --name {name}'}""")
    return code


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--down", action="store_true", help="remove the demo")
    parser.add_argument("--devices", type=int, default=3)
    parser.add_argument("--chunk-mb", type=int, default=8)
    parser.add_argument("--listen", default="0.0.0.0:8093")
    parser.add_argument("--base", type=Path, default=BASE, help="the node's side: config, copies, status")
    parser.add_argument("--name", default=NAME, help="the simulated lab's name")
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("the demo needs root (network namespaces, sshd)", file=sys.stderr)
        return 2
    if args.down:
        down(args.base, args.name)
        return 0
    return up(args.devices, args.chunk_mb, args.listen, args.base, args.name)


if __name__ == "__main__":
    sys.exit(main())
