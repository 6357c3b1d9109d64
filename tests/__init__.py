# Makes `tests.lab` importable as a package (python3 -m tests.lab ...).
