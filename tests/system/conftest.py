"""Fixtures shared by the system tests."""
import os
import time
from pathlib import Path

import pytest

from tests.system.container import SUITES, build_deb


@pytest.fixture(scope="session")
def deb(tmp_path_factory):
    """The package under test: built from the working tree, or ETHOSCOPE_TEST_DEB (e.g. dist/*.deb of `make deb`)."""
    if os.environ.get("ETHOSCOPE_TEST_DEB"):
        path = Path(os.environ["ETHOSCOPE_TEST_DEB"]).resolve()
        copy = tmp_path_factory.mktemp("deb") / path.name      # its own directory: that is bound into the container
        copy.write_bytes(path.read_bytes())
        return copy
    t0 = time.monotonic()
    path = build_deb(tmp_path_factory.mktemp("debbuild"))
    print("built %s in %.1fs" % (path.name, time.monotonic() - t0))
    return path


def _suites():
    wanted = [s for s in os.environ.get("ETHOSCOPE_TEST_SUITES", "").split(",") if s]
    unknown = set(wanted) - set(SUITES)
    if unknown:
        raise pytest.UsageError("ETHOSCOPE_TEST_SUITES: unknown release(s) %s (known: %s)"
                                % (", ".join(sorted(unknown)), ", ".join(SUITES)))
    return wanted or list(SUITES)


@pytest.fixture(scope="session", params=_suites())
def suite(request):
    """The Debian release every system test runs on, each in turn: bookworm (12) and trixie (13)."""
    return request.param
