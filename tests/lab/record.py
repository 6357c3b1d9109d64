"""Record the events of a real pass on the simulated lab, for the unit tests of the status and render.

    /usr/bin/python3 -m tests.lab.record [--out tests/fixtures/pass-events.json]

Brings up three simulated ethoscopes (the third with its link cut, so it fails), runs one real
pass (real sshd, rsync, SQLite) in this process, and saves every device the pass added and every
event its jobs sent, in order (tests.fixtures.status.save_pass). Replaying them through the store
(tests.fixtures.status.build) gives exactly the documents that pass wrote.
"""
import argparse
import sys
import tempfile
from pathlib import Path

from tests.fixtures.status import RECORDED, Pass, save_pass
from ethoscope_rsync.backup import passes as runner
from ethoscope_rsync.config.load import load_config

from .lab import Lab


class RecordingStore(runner.StatusStore):
    """The real store, keeping a copy of what it is given."""
    recorded = None

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        RecordingStore.recorded = self
        self.added, self.applied = [], []

    def add_device(self, machine_id, name, address, **choices):
        self.added.append((machine_id, name, address))
        return super().add_device(machine_id, name, address, **choices)

    def apply(self, event):
        self.applied.append(event)
        super().apply(event)


def record(out: Path) -> int:
    with tempfile.TemporaryDirectory(prefix="record-") as tmp, Lab(name="record", n_devices=3) as lab:
        for device in lab.devices:
            lab.populate(device, experiments=1, db_rows=200, video_chunks=2, chunk_bytes=64 << 10)
        lab.cut_link(lab.devices[2])
        base = Path(tmp)
        conf = base / "backup.conf"
        conf.write_text(lab.config_text(base / "results", base / "videos", base / "status.json", base / "state",
                                        base / "state" / "known_hosts")
                        + "connect_timeout = 2\n[transfer]\nretries = 0\nmin_free = 0\n")
        runner.StatusStore = RecordingStore
        code = runner.run_pass(load_config(conf))
        store = RecordingStore.recorded
        save_pass(out, Pass(tuple(store.added), tuple(store.applied), store.status.run.what,
                            store.status.run.started))
    print(f"pass exit code {code}; {len(store.applied)} events of {len(store.added)} devices -> {out}")
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python3 -m tests.lab.record", description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=RECORDED)
    return record(parser.parse_args(argv).out)


if __name__ == "__main__":
    sys.exit(main())
