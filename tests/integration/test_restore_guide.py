"""README's restore guide ("Restoring a device's data"), its commands run as written on the simulated lab
(only the paths and the device are the test's): the experiment comes back whole — the database sound
with every row the device has, every video chunk byte for byte."""
import re
import subprocess
from pathlib import Path

from tests.integration.backup_node import PYTHON, ROOT, Node, db_rows, integrity, tree_digest

README = ROOT / "README.md"


def guide() -> str:
    text = README.read_text()
    section = text.split("### Restoring a device's data", 1)[1].split("\n## ", 1)[0]
    return re.search(r"```sh\n(.*?)```", section, re.S).group(1)


def test_the_restore_guide_brings_an_experiment_back_whole(make_lab, tmp_path):
    lab = make_lab(1, populate=True)
    device = lab.devices[0]
    (tmp_path / "node").mkdir()
    node = Node(lab, tmp_path / "node")
    assert node.run().returncode == 0
    target = tmp_path / "analysis"
    script = guide()
    assert script.startswith("DEV=ETHOSCOPE_004 RESULTS=/ethoscope_data/results VIDEOS=/ethoscope_data/videos\n")
    script = script.replace("DEV=ETHOSCOPE_004 RESULTS=/ethoscope_data/results VIDEOS=/ethoscope_data/videos",
                            f"DEV={device.name} RESULTS={node.results} VIDEOS={node.videos}", 1)
    script = script.replace("TARGET=/mnt/analysis", f"TARGET={target}", 1)
    shell = (f'set -eu -o pipefail\nethoscope-backup() {{ {PYTHON} -m ethoscope_rsync "$@" -c {node.conf}; }}\n'
             + script)
    ran = subprocess.run(["bash", "-c", shell], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert ran.returncode == 0, ran.stdout + ran.stderr
    listed = [line for line in ran.stdout.splitlines() if line.startswith(str(node.results))]
    assert listed and all(f"/{device.id}/{device.name}/" in line for line in listed)
    experiment = Path(listed[-1].rstrip("/")).name
    [db] = (device.data_root / "results" / device.id / device.name / experiment).glob("*.db")
    [copy] = (target / device.name / "results" / experiment).glob("*.db")
    assert integrity(copy) == "ok" and db_rows(copy) == db_rows(db)
    chunks = tree_digest(device.data_root / "videos" / device.id / device.name / experiment)
    assert chunks and tree_digest(target / device.name / "videos" / experiment) == chunks
