"""Packaging metadata for ethoscope-rsync (built by pybuild in debian/)."""
from setuptools import find_packages, setup

from ethoscope_rsync import __version__

setup(
    name="ethoscope-rsync",
    version=__version__,
    description="Incremental rsync/SSH backup of ethoscope results and videos to the node",
    license="GPL-3.0-or-later",
    packages=find_packages(include=["ethoscope_rsync", "ethoscope_rsync.*"]),
    entry_points={"console_scripts": ["ethoscope-backup = ethoscope_rsync.commands.cli:main"]},
    python_requires=">=3.11",
)
