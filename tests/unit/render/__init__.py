"""Unit tests of ethoscope_rsync.render."""
