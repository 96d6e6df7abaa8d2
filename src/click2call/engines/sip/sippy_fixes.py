"""Corrections to sippy 2.5.0 applied once when the SIP stack starts. Runs on the sippy thread.

- URI parameters are case-insensitive (RFC 3261 §19.1.4), but sippy keeps `transport=UDP`
  as written and its transaction manager then refuses every in-dialog request to that
  Contact, the BYE included ("unsupported transport: UDP"). SIPp's `[transport]` and
  several phones write it in upper case. We lower-case the transport where sippy reads it.
"""

from __future__ import annotations

from typing import Any

_applied = False


def lower_transport(transport: Any) -> Any:
    return transport.lower() if isinstance(transport, str) else transport


def apply_fixes() -> None:
    global _applied  # sippy's classes are process-wide: patch them once per process
    if _applied:
        return
    from sippy.SipURL import SipURL

    original = SipURL.getTAddr

    def get_transport_address(self: Any) -> Any:
        address, transport = original(self)
        return address, lower_transport(transport)

    SipURL.getTAddr = get_transport_address
    _applied = True
