"""Smoke test of the benchmarks: `python3 -m bench --quick` runs every scenario and writes figures.

No timing is asserted (shared CI machines drift); only that it exits 0 and reports each scenario.
"""
import json
import os
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def test_bench_quick_runs_every_scenario(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("the simulated lab needs root")
    output = tmp_path / "bench.json"
    p = subprocess.run(["/usr/bin/python3", "-m", "bench", "--quick", "--output", str(output)],
                       cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    report = json.loads(output.read_text())
    assert report["quick"] is True
    assert report["machine"]["nproc"] and report["machine"]["rsync"] and report["date"]
    from bench.__main__ import SCENARIOS          # every scenario make bench runs
    assert set(report["scenarios"]) == set(SCENARIOS)
    for name in SCENARIOS:
        scenario = report["scenarios"][name]
        assert "error" not in scenario, scenario.get("error")
        figures = [r for r in scenario["rows"] if r["ours"] is not None]
        assert figures, f"no figure for scenario {name}"
    assert "ratio" in p.stdout and "target" in p.stdout      # the table was printed
