"""Where each leg of an order goes, from the tenant's SIP settings. Pure."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from click2call.calls import CallOrder, Extension
from click2call.settings import HostPort, TenantSip, sip_target


@dataclass(frozen=True, slots=True)
class LegTarget:
    address: HostPort
    user: str  # Request-URI user: extension or number
    caller_id: str  # From user shown to the called party
    username: str | None  # digest credentials, used when the peer challenges
    password: str | None
    transport: str = "udp"  # udp, tcp or tls

    @property
    def uri(self) -> str:
        """The Request-URI of the leg's INVITE."""
        if self.transport == "tls":
            return f"sips:{self.user}@{self.address}"
        tail = ";transport=tcp" if self.transport == "tcp" else ""
        return f"sip:{self.user}@{self.address}{tail}"


@lru_cache(maxsize=256)
def _peer(setting: str) -> tuple[HostPort, str]:
    """A pbx/trunk setting parsed once: every leg towards it shares one (frozen) address."""
    return sip_target(setting)


def _target(sip: TenantSip, via_pbx: bool, user: str, caller_id: str) -> LegTarget:
    address, transport = _peer(sip.pbx if via_pbx else sip.trunk)
    return LegTarget(
        address=address,
        transport=transport,
        user=user,
        caller_id=caller_id,
        username=sip.username or None,
        password=sip.password.get_secret_value() or None,
    )


def agent_target(order: CallOrder, sip: TenantSip) -> LegTarget:
    """Extensions ring through the PBX; mobiles go out through the trunk."""
    via_pbx = isinstance(order.agent, Extension)
    return _target(sip, via_pbx, order.agent.number, order.agent_caller_id)


def destination_target(order: CallOrder, sip: TenantSip) -> LegTarget:
    """Numbers go out through the trunk; internal numbers ring through the PBX."""
    via_pbx = not order.destination.via_trunk
    return _target(sip, via_pbx, order.destination.number, order.destination_caller_id)
