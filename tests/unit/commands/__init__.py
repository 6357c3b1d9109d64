"""Unit tests of ethoscope_rsync.commands."""
