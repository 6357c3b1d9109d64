"""Packaging metadata for ethoscope-rsync (built by pybuild in debian/)."""
from setuptools import setup

from ethoscope_rsync import __version__

setup(
    name="ethoscope-rsync",
    version=__version__,
    description="Incremental rsync/SSH backup of ethoscope results and videos to the node",
    license="GPL-3.0-or-later",
    packages=["ethoscope_rsync"],
    package_data={"ethoscope_rsync": ["backup.configspec"]},
    entry_points={"console_scripts": ["ethoscope-backup = ethoscope_rsync.cli:main"]},
    python_requires=">=3.11",
)
