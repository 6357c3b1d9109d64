"""What the verdict (issue 22) costs the status service: the page, ``GET /`` and ``/metrics`` rendered
for 100 devices (30 passes each, a week of disk samples), this tree against main before issue 22
(``BASELINE``, extracted with ``git archive``), each in its own process, alternately, ``ROUNDS`` rounds;
the figures are each round's best, shown as the best and the range over the rounds.

``GET /`` was ``{"status", "last_backup"}``; it now adds ``last_pass`` and the verdict, built as the web
service builds it (``render.verdict.root_document``). ``/metrics`` adds three families.

Run: ``/usr/bin/python3 -m bench.verdict_cost [--quick]``.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PYTHON = "/usr/bin/python3"
BASELINE = "eb4fbeb"           # main before issue 22
ROUNDS = 5

_MEASURE = r"""
import json, sys, time
from ethoscope_rsync.render import upstream as render
try:
    from ethoscope_rsync.render import verdict
except ImportError:
    verdict = None
status, history = (json.load(open(p)) for p in sys.argv[1:3])
now, n = float(sys.argv[3]), int(sys.argv[4])
def root():
    if verdict is not None:
        return json.dumps(verdict.root_document(status, history, now, 86400.0, 1800.0))
    return json.dumps(render.root_document(status, history))
def page():
    if verdict is not None:
        return render.render_html(status, history, now, 86400.0, horizon_days=14.0, overdue_after=1800.0)
    return render.render_html(status, history, now, 86400.0, horizon_days=14.0)
def metrics():
    if verdict is None:
        return render.render_metrics(status, history, now, 86400.0, 14.0)
    v = render.view(status, history, now, 86400.0)            # as the web service does (web/app.py)
    return (render.render_metrics(status, history, now, 86400.0, 14.0, v)
            + verdict.verdict_metrics(verdict.judged(status, history, now, 86400.0, 1800.0, v)))
out = {}
for name, fn in (("page", page), ("root", root), ("metrics", metrics)):
    for _ in range(3):
        fn()
    times = []
    for _ in range(n):
        t = time.perf_counter(); fn(); times.append(time.perf_counter() - t)
    out[name + "_ms"] = min(times) * 1e3
    out[name + "_bytes"] = len(fn())
print(json.dumps(out))
"""


def _measure(code_root: str, files: tuple, now: float, n: int) -> dict:
    env = dict(os.environ, PYTHONPATH=code_root, PYTHONDONTWRITEBYTECODE="1")
    p = subprocess.run([PYTHON, "-c", _MEASURE, *files, repr(now), str(n)], capture_output=True, text=True,
                       env=env, cwd=tempfile.gettempdir(), timeout=600, check=True)
    return json.loads(p.stdout.strip().splitlines()[-1])


def run(quick: bool = False) -> dict:
    sys.path.insert(0, ROOT)
    from bench.page_render import write_documents
    from tests.fixtures.status import NOW, long_history
    n, rounds = (10, 2) if quick else (40, ROUNDS)
    with tempfile.TemporaryDirectory(prefix="bench-verdict-") as tmp:
        base = os.path.join(tmp, "baseline")
        os.makedirs(base)
        archive = subprocess.run(["git", "-C", ROOT, "archive", BASELINE, "ethoscope_rsync"],
                                 capture_output=True, check=True, timeout=60).stdout
        subprocess.run(["tar", "-x", "-C", base], input=archive, check=True, timeout=60)
        files = write_documents(tmp, *long_history(100))
        ours, before = [], []
        for _ in range(rounds):
            ours.append(_measure(ROOT, files, NOW, n))
            before.append(_measure(base, files, NOW, n))
    out = {"baseline": BASELINE, "rounds": rounds}
    for key in ours[0]:
        a, b = [r[key] for r in ours], [r[key] for r in before]
        out[key] = {"ours": min(a), "ours_range": [min(a), max(a)], "before": min(b), "before_range": [min(b), max(b)],
                    "ratio": round(min(a) / min(b), 3) if min(b) else None}
    return out


if __name__ == "__main__":
    result = run("--quick" in sys.argv)
    for key, value in result.items():
        if isinstance(value, dict):
            print(f"{key:<15} ours {value['ours']:>10.2f} {value['ours_range']!s:<40} before {value['before']:>10.2f} "
                  f"{value['before_range']!s:<40} ratio {value['ratio']}")
