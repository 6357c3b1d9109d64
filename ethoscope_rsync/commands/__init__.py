"""The command line: one module per command, ``cli`` parses and dispatches.

The top layer: the only one that may import every other."""
