"""System test: the unit tests under each release's own python3 (Debian 12: 3.11, Debian 13: 3.13), in its
booted container, with every warning our own modules trigger turned into an error; and no module of the
package imports, itself or through a dependency, a module Python 3.13 removed (PEP 594).

The source tree is bound read-only into the container; nothing is installed from it.
"""
import os

import pytest

from tests.system.container import BASE_PACKAGES, REPO_ROOT, Container, dependency_names, rootfs_for

GUEST_SRC = "/mnt/ethoscope-src"
# PEP 594's dead batteries, gone from Python 3.13 (and lib2to3, gone with them).
REMOVED_IN_3_13 = ("aifc", "audioop", "cgi", "cgitb", "chunk", "crypt", "imghdr", "lib2to3", "mailcap", "msilib",
                   "nis", "nntplib", "ossaudiodev", "pipes", "sndhdr", "spwd", "sunau", "telnetlib", "uu", "xdrlib")
# pytest's ini filterwarnings takes a regular expression for the module a warning is attributed to.
OURS = r"(ethoscope_rsync|tests)(\..*)?"

IMPORT_ALL = r"""
import importlib, pkgutil, sys, warnings
warnings.simplefilter("error")
import ethoscope_rsync
names = [m.name for m in pkgutil.walk_packages(ethoscope_rsync.__path__, "ethoscope_rsync.")
         if not m.name.endswith(".__main__")]          # __main__ runs the command line
for name in names:
    importlib.import_module(name)
removed = sorted(set(sys.argv[1:]) & set(sys.modules))
print(len(names), "modules imported on", sys.version.split()[0])
if removed:
    sys.exit("modules removed in Python 3.13 imported: " + ", ".join(removed))
"""


@pytest.fixture(scope="module")
def box(deb, suite):
    rootfs = rootfs_for(BASE_PACKAGES + dependency_names(deb), suite)
    with Container(rootfs, "ethpy%s%d" % (suite[0], os.getpid()), binds_ro=[(str(REPO_ROOT), GUEST_SRC)]) as c:
        yield c


def in_source(box, argv, timeout=600):
    return box.exec(["env", "PYTHONDONTWRITEBYTECODE=1", "HOME=/root", "sh", "-c", 'cd "$0" && exec "$@"', GUEST_SRC]
                    + argv, timeout=timeout, check=False)


def test_every_module_imports_without_a_warning_or_a_removed_module(box, suite):
    p = in_source(box, ["python3", "-c", IMPORT_ALL] + list(REMOVED_IN_3_13))
    print(p.stdout, p.stderr)
    assert p.returncode == 0, p.stdout + p.stderr
    expected = {"bookworm": "3.11.", "trixie": "3.13."}[suite]
    assert " on " + expected in p.stdout, p.stdout


def test_unit_tests_pass_with_our_warnings_as_errors(box):
    p = in_source(box, ["python3", "-m", "pytest", "-p", "no:cacheprovider", "-q", "-o",
                        "filterwarnings=error:::%s" % OURS, "tests/unit"], timeout=900)
    print(p.stdout[-3000:], p.stderr[-3000:])
    assert p.returncode == 0, p.stdout[-6000:] + p.stderr[-3000:]
    assert " passed" in p.stdout and " failed" not in p.stdout and " error" not in p.stdout, p.stdout[-2000:]
