"""Root conftest: make the repository root importable (``import tests.lab``, ``import ethoscope_rsync``)."""
import os
import sys

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)


def pytest_sessionfinish(session, exitstatus):
    """A skipped test is not a passed test: the suite fails when anything was skipped."""
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    skipped = len(reporter.stats.get("skipped", [])) if reporter else 0
    if skipped and exitstatus == 0:
        session.exitstatus = 1
        if reporter:
            reporter.write_line(f"{skipped} test(s) skipped: the suite counts that as a failure", red=True)
