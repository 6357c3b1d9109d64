"""Unit tests of ethoscope_rsync.config."""
