"""Unit tests of ethoscope_rsync.alerts."""
