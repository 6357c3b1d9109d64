"""ethoscope-rsync: back up ethoscope experiment data to the lab's node with rsync over SSH."""

__version__ = "0.3.0"
