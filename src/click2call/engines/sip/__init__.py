"""The built-in SIP engine on our own SIP core (see engine.py)."""

from click2call.engines.sip.endpoint import SipEndpoint
from click2call.engines.sip.engine import SipEngine

__all__ = ["SipEndpoint", "SipEngine"]
