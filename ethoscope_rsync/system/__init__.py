"""The bottom layer: running processes (the one place), dropping root, the journal, exit codes.

Imports nothing of ours but itself."""
