"""Allow ``python3 -m ethoscope_rsync``."""
import sys

from ethoscope_rsync.commands.cli import main

sys.exit(main())
