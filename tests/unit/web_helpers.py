"""Helpers of the status service's unit tests: example status files, and its log lines.

The log lines are captured at the service's own logger ("ethoscope_rsync.web"): pytest's caplog
listens at the root logger, which the package logger "ethoscope_rsync" does not propagate to
once ``logs.setup()`` ran in an earlier test.
"""
import logging

import pytest

from bench.status_fixture import add_history_device, build, example_pass
from bench.status_service import write_json


def write_example(status_path, history_path):
    """The example pass (device 1 done, device 2 failed) and a device known from history only."""
    status, history = build(example_pass())
    write_json(status_path, status)
    write_json(history_path, add_history_device(history))


class Lines(logging.Handler):
    def __init__(self):
        super().__init__(logging.DEBUG)
        self.messages = []

    def emit(self, record):
        self.messages.append(record.getMessage())


@pytest.fixture
def web_log():
    logger = logging.getLogger("ethoscope_rsync.web")
    lines, level, propagate = Lines(), logger.level, logger.propagate
    logger.addHandler(lines)
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    yield lines
    logger.removeHandler(lines)
    logger.setLevel(level)
    logger.propagate = propagate
