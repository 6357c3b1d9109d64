"""The second copy: the node's copies of results and videos sent to a restic repository the lab
chooses, its retention, its check, and what ``check`` says of it. Pure argv builders (restic.py),
parsers of restic's output (output.py), what to send (sources.py), when (schedule.py), the run
(run.py) and the repository's check (check.py).

Imports ``render``, ``state``, ``config`` and ``system``; never ``backup``, ``web``, ``alerts`` or
``commands``."""
