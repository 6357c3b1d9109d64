"""The one place that runs processes: what the second copy needs of it (its own environment for the
child only, and a stop signal of the caller's choice)."""
import os
import signal
import threading

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
