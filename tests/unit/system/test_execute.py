"""The one place that runs processes: what the second copy needs of it (its own environment for the
child only, and a stop signal of the caller's choice)."""
import os
import signal
import threading
import time

from ethoscope_rsync.system import execute


def test_variables_are_given_to_the_child_only():
    result = execute.run(("sh", "-c", 'printf "%s|%s" "$SECRET_FILE" "$LC_ALL"'), timeout=10,
                         env={"SECRET_FILE": "/run/credentials/x/pw", "LC_ALL": "C"})
    assert result.stdout == "/run/credentials/x/pw|C.UTF-8" and "SECRET_FILE" not in os.environ


def test_a_stop_sends_the_chosen_signal_first(tmp_path):
    marker = tmp_path / "cleaned"
    script = f'trap "echo cleaned > {marker}; exit 130" INT; echo ready; while :; do sleep 0.05; done'
    stop = threading.Event()
    result = execute.stream(("sh", "-c", script), lambda line: stop.set(), timeout=30, stop=stop,
                            stop_signal=signal.SIGINT)          # stopped once the trap is in place
    assert result.interrupted and marker.read_text() == "cleaned\n"


def _ready(script: str, timeout: float) -> tuple:
    """(the held helper's ready line, this process's CPU seconds reading it)."""
    with execute.held(("sh", "-c", script)) as helper:
        cpu = time.process_time()
        line = helper.ready_line(timeout)
        cpu = time.process_time() - cpu
        os.killpg(helper.process.pid, signal.SIGKILL)
    return line, cpu


def test_a_ready_line_is_read_in_blocks_up_to_its_end():
    line, _ = _ready('printf "%s" "ETHOSCOPE-BACKUP-HOLD {"; sleep 0.2; '
                     'printf "\\"held\\": []}\\nafter\\n"; sleep 30', 20)
    assert line == 'ETHOSCOPE-BACKUP-HOLD {"held": []}'


def test_a_device_flooding_a_line_that_never_ends_is_cut_at_once():
    """The issue's device: a holder answering without a newline cost a core for 30 s (one byte a
    read). Now a flood is cut at MAX_READY bytes, long before the timeout, for little CPU."""
    line, cpu = _ready('exec tr -d "\\n" < /dev/zero', 60)
    assert line == "" and cpu < 2.0          # 16 blocks of 64 kB; one byte a read: ~1M reads, ~seconds


def test_a_device_trickling_a_line_that_never_ends_costs_its_timeout_and_no_core():
    line, cpu = _ready('while :; do printf x; sleep 0.01; done', 2.0)
    assert line == "" and cpu < 1.0


def test_a_child_cut_at_its_answer_s_limit_is_ended():
    result = execute.run(("sh", "-c", 'exec tr -d "\\n" < /dev/zero'), timeout=120, cut_at=1 << 20)
    assert result.cut and len(result.stdout) == 1 << 20 and not result.timed_out
