"""Fixtures for integration tests that need simulated ethoscopes (see tests/lab)."""
import itertools
import os

import pytest

from tests.lab import Lab

_counter = itertools.count(1)


def _unique_name(prefix):
    # unique per process so concurrent test runs on the same machine never tear down each other's labs
    return "%s%d-%d" % (prefix, os.getpid(), next(_counter))


@pytest.fixture(scope="session", autouse=True)
def _reap_stale_labs():
    """Labs left by a killed earlier test run (owner process gone) are removed before we start."""
    if os.geteuid() == 0:
        Lab.down_stale()
    yield


@pytest.fixture
def make_lab():
    """Factory: ``make_lab(n_devices=2, populate=False, **Lab kwargs)`` -> an up Lab; all torn down afterwards."""
    if os.geteuid() != 0:
        pytest.skip("the simulated lab needs root")
    made = []

    def factory(n_devices=2, populate=False, name=None, **kwargs):
        lab = Lab(name=name or _unique_name("t"), n_devices=n_devices, **kwargs)
        made.append(lab)
        lab.up()
        if populate:
            for d in lab.devices:
                lab.populate(d, experiments=1, db_rows=200, video_chunks=2, chunk_bytes=64 << 10, mp4=True)
        return lab

    yield factory
    errors = []
    for lab in reversed(made):
        try:
            lab.down()
        except Exception as e:  # keep tearing down the others
            errors.append(e)
    if errors:
        raise errors[0]


@pytest.fixture
def lab(make_lab):
    """Two devices, each populated with one small experiment (200 rows, 2 x 64 KiB chunks, an mp4)."""
    return make_lab(n_devices=2, populate=True)
