"""What the lab tells us: backup.conf loaded and validated once into an immutable Config, and the
vocabulary of devices (names, machine ids, addresses, the -e selection).

Imports nothing of ours but ``system``."""
