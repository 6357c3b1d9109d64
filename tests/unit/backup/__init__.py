"""Unit tests of ethoscope_rsync.backup."""
