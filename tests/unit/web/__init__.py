"""Unit tests of ethoscope_rsync.web."""
