"""Command line for the simulated lab.

    /usr/bin/python3 -m tests.lab up --name demo --devices 3 [--populate] [--chunk-mb N]
    /usr/bin/python3 -m tests.lab down --name demo | down --all
    /usr/bin/python3 -m tests.lab status
"""
import argparse
import json
import sys
import time

from .lab import Lab


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python3 -m tests.lab", description="simulated ethoscope lab")
    sub = ap.add_subparsers(dest="cmd", required=True)
    up = sub.add_parser("up", help="bring a lab up (tears down a stale lab of the same name first)")
    up.add_argument("--name", default="demo")
    up.add_argument("--devices", type=int, default=3)
    up.add_argument("--base-dir")
    up.add_argument("--no-decoys", action="store_true")
    up.add_argument("--populate", action="store_true", help="create one experiment per device")
    up.add_argument("--experiments", type=int, default=1)
    up.add_argument("--db-rows", type=int, default=1000)
    up.add_argument("--chunks", type=int, default=2)
    up.add_argument("--chunk-mb", type=float, default=4)
    down = sub.add_parser("down", help="tear a lab down")
    g = down.add_mutually_exclusive_group(required=True)
    g.add_argument("--name")
    g.add_argument("--all", action="store_true")
    down.add_argument("--keep-data", action="store_true")
    sub.add_parser("status", help="list labs")
    args = ap.parse_args(argv)

    if args.cmd == "up":
        t0 = time.monotonic()
        lab = Lab(name=args.name, n_devices=args.devices, base_dir=args.base_dir, decoys=not args.no_decoys,
                  persistent=True)
        lab.up()
        t_up = time.monotonic() - t0
        if args.populate:
            for d in lab.devices:
                lab.populate(d, experiments=args.experiments, db_rows=args.db_rows, video_chunks=args.chunks,
                             chunk_bytes=int(args.chunk_mb * (1 << 20)))
        out = lab.summary()
        out["up_seconds"] = round(t_up, 3)
        out["devices_url"] = "http://%s/devices" % lab.node_address
        print(json.dumps(out, indent=1))
        return 0
    if args.cmd == "down":
        if args.all:
            names = Lab.down_all()
            print(json.dumps({"removed": names}))
        else:
            Lab(name=args.name).down(keep_data=args.keep_data)
            print(json.dumps({"removed": [args.name]}))
        return 0
    if args.cmd == "status":
        print(json.dumps(Lab.list_labs(), indent=1))
        return 0
    return 2


if __name__ == "__main__":
    sys.exit(main())
