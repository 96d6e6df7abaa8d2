"""sippy corrections, checked in a child process: importing sippy binds its loop to a thread."""

from __future__ import annotations

import subprocess
import sys

PROBE = """
from click2call.engines.sip.sippy_fixes import apply_fixes
from sippy.SipURL import SipURL
before = SipURL('sip:200@127.0.0.1:5070;transport=UDP').getTAddr()
apply_fixes()
apply_fixes()  # idempotent
after = SipURL('sip:200@127.0.0.1:5070;transport=UDP').getTAddr()
plain = SipURL('sip:200@127.0.0.1:5070').getTAddr()
print(before[1], after[1], after[0][0], after[0][1], plain[1])
"""


def test_upper_case_transport_is_read_as_lower_case() -> None:
    out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, check=True)
    before, after, host, port, plain = out.stdout.split()
    assert before == "UDP"  # the sippy 2.5.0 behaviour the fix exists for
    assert after == "udp"
    assert (host, port) == ("127.0.0.1", "5070")  # the address is untouched
    assert plain == "udp"
