"""Example status files for the status service's unit tests."""
from tests.fixtures.status import add_history_device, build, example_pass
from tests.fixtures.status import write_json


def write_example(status_path, history_path):
    """The example pass (device 1 done, device 2 failed) and a device known from history only."""
    status, history = build(example_pass())
    write_json(status_path, status)
    write_json(history_path, add_history_device(history))
