"""Lint and types as tests: flake8 over the code, the tests and the benchmarks, mypy over the code.

Both run as Debian's own tools under /usr/bin/python3 (python3-flake8, mypy), with the settings
in setup.cfg; a finding fails the test and the failure shows the tool's whole report. The last
two tests check the checkers: a finding planted in a scratch file must be reported (so a setting
that excluded everything, or a tool that checked nothing, could not pass for clean code).
"""
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PYTHON = "/usr/bin/python3"
FLAKE8_PATHS = ("ethoscope_rsync", "tests", "bench")
MYPY_PATHS = ("ethoscope_rsync",)
TIMEOUT = 600


def _run(tool: str, *args: str, cache: Path | None = None) -> subprocess.CompletedProcess:
    argv = [PYTHON, "-m", tool, *args]
    if tool == "mypy":        # its cache outside the tree: helpers checking other trees never share one
        argv[3:3] = ["--cache-dir", str(cache)]
    return subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=TIMEOUT)


def _report(result: subprocess.CompletedProcess) -> str:
    return f"exit {result.returncode}\n{result.stdout}{result.stderr}"


def test_flake8_finds_nothing():
    result = _run("flake8", *FLAKE8_PATHS)
    if result.returncode != 0 or result.stdout:
        pytest.fail(_report(result), pytrace=False)


def test_mypy_finds_nothing(tmp_path):
    result = _run("mypy", *MYPY_PATHS, cache=tmp_path / "mypy-cache")
    if result.returncode != 0:
        pytest.fail(_report(result), pytrace=False)


def test_flake8_reports_a_planted_finding(tmp_path):
    """setup.cfg's 120 columns are in force (a line of 121 is reported) and an unused import is."""
    bad = tmp_path / "bad.py"
    bad.write_text("import os\n\nx = '" + "a" * 115 + "'\n")
    result = _run("flake8", "--config", str(ROOT / "setup.cfg"), str(bad))
    assert result.returncode != 0, _report(result)
    assert "F401" in result.stdout and "E501" in result.stdout and ":3:121:" in result.stdout, _report(result)


def test_mypy_reports_a_planted_error(tmp_path):
    """With setup.cfg's settings, an error inside an unannotated function is reported too."""
    bad = tmp_path / "bad.py"
    bad.write_text("def f():\n    x: int = 'not a number'\n    return x\n")
    result = _run("mypy", "--config-file", str(ROOT / "setup.cfg"), str(bad), cache=tmp_path / "mypy-cache")
    assert result.returncode == 1 and "[assignment]" in result.stdout, _report(result)
