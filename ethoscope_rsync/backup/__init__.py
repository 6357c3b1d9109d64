"""The backup itself: a pass (discovery, pins, the pool), one device's job, the ssh/rsync argv
builders and output parsers, the probe, live databases, the node's destinations,
the dry run and the verification of the node's copies.

Imports ``render``, ``state``, ``config`` and ``system``; never ``web``, ``alerts`` or ``commands``."""
