"""Corrections to sippy 2.5.0 applied once when the SIP stack starts. Runs on the sippy thread.

- URI parameters are case-insensitive (RFC 3261 §19.1.4), but sippy keeps `transport=UDP`
  as written and its transaction manager then refuses every in-dialog request to that
  Contact, the BYE included ("unsupported transport: UDP"). SIPp's `[transport]` and
  several phones write it in upper case. We lower-case the transport where sippy reads it.
- sippy reads its UDP socket with three threads by default, so two datagrams that arrive
  close together can reach the transaction layer swapped. Measured here: a destination's
  180 and 200 sent 1 ms apart lost the 180 in 2 of 9 test-suite runs; the same can put a
  BYE before the 200 it follows. One receiving thread keeps arrival order.
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


def ordered_transaction_manager(global_config: dict[str, Any], request_handler: Any) -> Any:
    """sippy's transaction manager reading its socket with a single thread."""
    from sippy.SipTransactionManager import SipTransactionManager
    from sippy.Udp_server import Udp_server, Udp_server_opts

    class SingleReceiverOptions(Udp_server_opts):  # type: ignore[misc]
        nworkers = 1

    class OrderedTransactionManager(SipTransactionManager):  # type: ignore[misc]
        model_udp_server = (Udp_server, SingleReceiverOptions)

    return OrderedTransactionManager(global_config, request_handler)
