"""Pure renderers of the state: the upstream tool's JSON shapes, Prometheus text, the HTML page and
its SVG, alert words, the terminal table, human-readable numbers.

Imports only ``state``, ``config`` and ``system``; writes nothing, runs nothing."""
