"""Exit codes of every command (fixed, documented in ethoscope-backup(8)), and the lock's refusal."""

EXIT_OK = 0        # all good, or nothing to do
EXIT_FAILED = 1    # a device failed, discovery failed, or the pass was stopped
EXIT_USAGE = 2     # usage or configuration error
EXIT_BUSY = 75     # another pass is already running (EX_TEMPFAIL)
EXIT_UNKNOWN = 3   # status: nothing to judge yet (no pass has run); 1 there: a device failing or stale, or overdue


class Busy(Exception):
    """Another pass holds the lock."""
