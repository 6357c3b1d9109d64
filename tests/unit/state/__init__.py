"""Unit tests of ethoscope_rsync.state."""
