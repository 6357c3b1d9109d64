"""The state of the backups as typed records: a pass and its devices (status.json), what survives a
reboot (history.json), the events device jobs send, and the store that is their single writer.

Imports only ``config`` and ``system``."""
