"""What a command costs: CPU seconds and peak memory of it and everything it waited for."""
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PYTHON = "/usr/bin/python3"

MEASURED = ("import resource, subprocess, sys\n"
            "code = subprocess.run(sys.argv[1:]).returncode\n"
            "usage = resource.getrusage(resource.RUSAGE_CHILDREN)\n"
            "print('PASS-COST %.3f %d' % (usage.ru_utime + usage.ru_stime, usage.ru_maxrss), file=sys.stderr)\n"
            "sys.exit(code)\n")


def measured(argv, env=None, timeout=3600) -> tuple:
    """Run `argv` in a fresh process -> (CompletedProcess, CPU seconds of it and everything it waited
    for, peak RSS in MB of the largest of them). A fresh parent, so no earlier child's peak counts."""
    result = subprocess.run([PYTHON, "-c", MEASURED, *argv], cwd=ROOT, capture_output=True, text=True,
                            timeout=timeout, env=env)
    cost = [line.split() for line in result.stderr.splitlines() if line.startswith("PASS-COST ")][-1]
    return result, float(cost[1]), int(cost[2]) / 1024
