"""The read-only status service: the app as a pure function, its prepared documents, its WSGI
adapter, the gate that accepts and reads requests on the sockets systemd hands over, and cheroot's
workers that answer them (all of cheroot in ``cheroot_seam``).

Imports ``render``, ``state``, ``config`` and ``system``."""
