"""mDNS announcements for the lab's devices (``_ethoscope._tcp.local.``), python3-zeroconf on the bridge.

``--services FILE`` announces the entries listed there instead (``[{"name", "id", "ip"}, ...]``), e.g. an
impostor's: the announcer says whatever it is told, as anyone on the LAN can.

The announcer is its own process (``/usr/bin/python3 -m tests.lab.mdns --bind IP --lab-json FILE``) so the
test process has no zeroconf threads; ``lab.announce_mdns()`` starts it and ``lab.down()`` kills it.
"""
import argparse
import json
import signal
import socket
import sys
import threading

SERVICE = "_ethoscope._tcp.local."


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--bind", required=True)
    ap.add_argument("--lab-json", required=True)
    ap.add_argument("--ready", required=True)
    ap.add_argument("--port", type=int, default=9000)
    ap.add_argument("--services", help="JSON list of {name, id, ip} to announce instead of the lab's devices")
    args = ap.parse_args(argv)
    from zeroconf import ServiceInfo, Zeroconf

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *a: stop.set())
    signal.signal(signal.SIGINT, lambda *a: stop.set())
    with open(args.services or args.lab_json) as f:
        announced = json.load(f)
    zc = Zeroconf(interfaces=[args.bind])
    infos = []
    for d in announced if args.services else announced["devices"]:
        info = ServiceInfo(
            SERVICE, "%s-%s.%s" % (d["name"], d["id"], SERVICE),
            addresses=[socket.inet_aton(d["ip"])], port=args.port,
            properties={"MACHINE_ID": d["id"], "MACHINE_NAME": d["name"]},
            server="%s.local." % d["name"].lower().replace("_", "-"))
        zc.register_service(info, allow_name_change=False)
        infos.append(info)
    with open(args.ready, "w") as f:
        f.write(str(len(infos)))
    stop.wait()
    for info in infos:
        zc.unregister_service(info)
    zc.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
