"""The status page's render time and the /status size for 100 devices, beside the code before issue 14.

Documents (``bench/status_fixture.long_history``, written by the real store): 100 devices with
their last 30 passes each and a week of disk samples, in two forms: each device listing only the
files of its last pass (the smallest history, where the page's new strips and charts weigh most)
and each listing 300 video chunks (a device keeping about a day of 5-minute chunks).

Today's figures come from the page code as it was before issue 14 (``BASELINE``, the package at
that commit, extracted with ``git archive`` into a temporary folder and imported from there in its
own process); ours from this tree, also in its own process, alternately, best of ``ROUNDS`` rounds.
Where the tree is not a git checkout, the baseline is this tree's page without strips and charts.

Run: ``/usr/bin/python3 -m bench.page_render [--quick]``.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PYTHON = "/usr/bin/python3"
BASELINE = "709cafd"           # main before issue 14: the page, /status and /metrics as they were
TARGET = 1.10                  # the page may take 10 % longer than before
ROUNDS = 5

# Runs in a child process with PYTHONPATH set to the code under test; prints one JSON line.
_MEASURE = r"""
import json, sys, time, inspect
try:                                   # this tree
    from ethoscope_rsync.render import upstream as render
except ImportError:                     # the baseline's flat layout
    from ethoscope_rsync import render
status, history = (json.load(open(p)) for p in sys.argv[1:3])
now, n, plain = float(sys.argv[3]), int(sys.argv[4]), sys.argv[5] == "plain"
kw = {"charts": False} if plain else {}
horizon = {"horizon_days": 14.0} if "horizon_days" in inspect.signature(render.status_document).parameters else {}
kw.update(horizon)
def page():
    return render.render_html(status, history, now, 86400.0, **kw)
for _ in range(3):
    page()
times = []
for _ in range(n):
    t = time.perf_counter(); page(); times.append(time.perf_counter() - t)
times.sort()
doc = json.dumps(render.status_document(status, history, now, 86400.0, **horizon), separators=(",", ":"))
print(json.dumps({"min_ms": times[0] * 1e3, "median_ms": times[len(times) // 2] * 1e3,
                  "page_bytes": len(page()), "status_bytes": len(doc)}))
"""


def _baseline_tree(tmp: str) -> str | None:
    """The package at BASELINE extracted under `tmp`; None if this is not a git checkout."""
    try:
        archive = subprocess.run(["git", "-C", ROOT, "archive", BASELINE, "ethoscope_rsync"],
                                 capture_output=True, check=True, timeout=60).stdout
        subprocess.run(["tar", "-x", "-C", tmp], input=archive, check=True, timeout=60)
    except (OSError, subprocess.CalledProcessError, subprocess.TimeoutExpired):
        return None
    return tmp


def write_documents(folder: str, status: dict, history: dict) -> tuple:
    """The two documents as the pass writes them (compact JSON) in `folder` -> (status path, history path)."""
    files = (os.path.join(folder, "status.json"), os.path.join(folder, "history.json"))
    for path, doc in zip(files, (status, history)):
        with open(path, "w") as handle:
            json.dump(doc, handle, separators=(",", ":"))
    return files


def _measure(code_root: str, files: tuple, now: float, n: int, plain: bool) -> dict:
    env = dict(os.environ, PYTHONPATH=code_root, PYTHONDONTWRITEBYTECODE="1")
    p = subprocess.run([PYTHON, "-c", _MEASURE, *files, repr(now), str(n), "plain" if plain else "full"],
                       capture_output=True, text=True, env=env, cwd=tempfile.gettempdir(), timeout=600, check=True)
    return json.loads(p.stdout.strip().splitlines()[-1])


def _best(results: list) -> dict:
    return {key: min(r[key] for r in results) for key in results[0]}


def run(quick: bool = False) -> dict:
    sys.path.insert(0, ROOT)
    from tests.fixtures.status import NOW, long_history
    from bench.transfer import row
    out = {"baseline": BASELINE, "rows": []}
    n, rounds = (20, 2) if quick else (60, ROUNDS)
    with tempfile.TemporaryDirectory(prefix="bench-page-") as tmp:
        os.makedirs(os.path.join(tmp, "baseline"))
        old_root = _baseline_tree(os.path.join(tmp, "baseline"))
        for label, listed in (("last pass's files listed", 0), ("300 chunks listed", 300)):
            files = write_documents(tmp, *long_history(100, files=listed))
            ours, today = [], []
            for _ in range(rounds):
                ours.append(_measure(ROOT, files, NOW, n, plain=False))
                today.append(_measure(old_root or ROOT, files, NOW, n, plain=old_root is None))
            ours, today = _best(ours), _best(today)
            out[label] = {"ours": ours, "today": today, "history_bytes": os.path.getsize(files[1])}
            note = f"baseline {BASELINE}" if old_root else "baseline: ours without strips and charts"
            out["rows"] += [
                row("7 status page", f"HTML render ms, 100 devices, {label}", round(ours["min_ms"], 2),
                    round(today["min_ms"], 2), target=TARGET, unit="ms", note=note),
                row("7 status page", f"/status bytes, 100 devices, {label}", ours["status_bytes"],
                    today["status_bytes"], unit="B", note=note),
                row("7 status page", f"HTML bytes, 100 devices, {label}", ours["page_bytes"],
                    today["page_bytes"], unit="B", note=note)]
    return out


if __name__ == "__main__":
    result = run("--quick" in sys.argv)
    for r in result["rows"]:
        print(f"{r['measure']:<55} ours {r['ours']:>10} today {r['baseline']:>10} ratio {r['ratio']}")
