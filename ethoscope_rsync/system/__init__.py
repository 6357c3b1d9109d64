"""The bottom layer: running processes (the one place), opening untrusted SQLite files (a device's
databases, on the node), dropping root, the journal, exit codes.

Imports nothing of ours but itself."""
