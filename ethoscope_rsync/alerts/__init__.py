"""Alerts: what changed since the last report (devices, destinations, the pass, damaged copies) and
the channels that carry it (journal, mail, webhook).

Imports ``render``, ``state``, ``config`` and ``system``."""
