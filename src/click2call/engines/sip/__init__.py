"""The built-in SIP engine (sippy underneath; see engine.py)."""

from click2call.engines.sip.engine import SipEngine
from click2call.engines.sip.stack import SippyStack

__all__ = ["SipEngine", "SippyStack"]
