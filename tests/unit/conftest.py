"""Fixtures of the unit tests."""
import logging

import pytest

from ethoscope_rsync.system.logs import log


class _Records(logging.Handler):
    def __init__(self):
        super().__init__(logging.DEBUG)
        self.records = []

    def emit(self, record):
        self.records.append(record)

    def messages(self, level=logging.DEBUG):
        return [r.getMessage() for r in self.records if r.levelno >= level]


@pytest.fixture
def journal():
    """What the package logs during the test (records with their journal fields as attributes),
    whatever handlers an earlier test's logs.setup() left on the package logger."""
    handler = _Records()
    level = log.level
    log.addHandler(handler)
    log.setLevel(logging.DEBUG)
    yield handler
    log.removeHandler(handler)
    log.setLevel(level)
