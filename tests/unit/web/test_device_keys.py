"""Device keys of ``/status/<key>`` (render.find_device): every form, and hostile keys."""
import os
import subprocess
from types import SimpleNamespace as Named

import pytest

from ethoscope_rsync.render.upstream import find_device

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
DEVICES = {"59de4712c3e30e298e1f8394cab03558": Named(name="ETHOSCOPE_002"),
           "0123456789abcdef0123456789abcdef": Named(name="ETHOSCOPE_017"),
           "ffffffffffffffffffffffffffffffff": Named(name="ETHOSCOPE_000"),
           "eeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee": Named(name="no number")}


@pytest.mark.parametrize("key, expected", [
    ("59de4712c3e30e298e1f8394cab03558", "59de4712c3e30e298e1f8394cab03558"),
    ("59DE4712C3E30E298E1F8394CAB03558", "59de4712c3e30e298e1f8394cab03558"),
    ("ETHOSCOPE_002", "59de4712c3e30e298e1f8394cab03558"),
    ("ethoscope_002", "59de4712c3e30e298e1f8394cab03558"),
    ("002", "59de4712c3e30e298e1f8394cab03558"),
    ("2", "59de4712c3e30e298e1f8394cab03558"),
    (" 17 ", "0123456789abcdef0123456789abcdef"),
    ("ETHOSCOPE_0017", "0123456789abcdef0123456789abcdef"),
    ("0", "ffffffffffffffffffffffffffffffff"),
    ("000", "ffffffffffffffffffffffffffffffff"),
    ("no number", "eeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee"),
    ("3", None), ("", None), ("ETHOSCOPE_", None), ("-2", None), ("2x", None), ("+2", None),
    ("\u0662", None),             # ARABIC-INDIC DIGIT TWO is not 2
    ("1" * 5000, None),           # past int()'s 4,300-digit limit: no ValueError
    ("0" * 5000 + "2", None),    # longer than any machine id: not looked at
], ids=lambda v: repr(v)[:24] if isinstance(v, str) else "none")
def test_key_forms(key, expected):
    assert find_device(DEVICES, key) == expected


def test_long_zero_runs_are_linear():
    """``000…0x`` made the old pattern backtrack quadratically: 300 KB took hours; now milliseconds.

    Run in a child with a generous bound so a regression fails instead of hanging the suite.
    """
    code = ("from types import SimpleNamespace\n"
            "from ethoscope_rsync.render.upstream import find_device\n"
            "d = {'a': SimpleNamespace(name='ETHOSCOPE_001')}\n"
            "for n in (8000, 300000):\n"
            "    assert find_device(d, '0' * n + 'x') is None\n"
            "    assert find_device(d, 'ETHOSCOPE_' + '0' * n + '1') is None\n"
            "assert find_device(d, 'ETHOSCOPE_0001') == 'a'\n")
    done = subprocess.run(["/usr/bin/python3", "-c", code], cwd=ROOT, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr


def test_a_number_two_names_share_addresses_neither():
    """ETHOSCOPE_042 and ETHOSCOPE_0042 (a history from before names had one form): each is
    reached by its exact name or machine id, their number reaches neither."""
    devices = {"a" * 32: Named(name="ETHOSCOPE_042"), "b" * 32: Named(name="ETHOSCOPE_0042")}
    assert find_device(devices, "ETHOSCOPE_042") == "a" * 32 and find_device(devices, "ethoscope_0042") == "b" * 32
    assert find_device(devices, "042") is None and find_device(devices, "42") is None
    assert find_device(devices, "b" * 32) == "b" * 32
