"""The read-only status service: the app as a pure function, its prepared documents, the CherryPy
adapter, the cheroot server on the sockets systemd hands over, and the gate against slow clients.

Imports ``render``, ``state``, ``config`` and ``system``."""
