"""engines/sip/transport.Resolver: a pbx or trunk by name resolves to an address our SIP
socket can send to."""

from __future__ import annotations

import asyncio
import socket
from typing import Any

import pytest

from click2call.engines.sip.transport import Resolver

BOTH = [
    (socket.AF_INET6, socket.SOCK_DGRAM, 17, "", ("2001:db8::5", 5060, 0, 0)),
    (socket.AF_INET, socket.SOCK_DGRAM, 17, "", ("192.0.2.5", 5060)),
]


@pytest.mark.parametrize(
    ("family", "address"), [(socket.AF_INET, "192.0.2.5"), (socket.AF_INET6, "2001:db8::5")]
)
async def test_a_dual_stack_name_resolves_in_the_sockets_family(
    family: socket.AddressFamily, address: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """getaddrinfo gives a dual-stack name's IPv6 address first: an IPv4 socket could not
    send to it (every request dropped, then timed out)."""
    asked: list[int] = []

    async def getaddrinfo(host: str, port: int, **options: Any) -> list[Any]:
        asked.append(options.get("family", 0))
        return [info for info in BOTH if options.get("family", 0) in (0, info[0])]

    monkeypatch.setattr(asyncio.get_running_loop(), "getaddrinfo", getaddrinfo)
    assert await Resolver(family).resolve("trunk.example", 5060) == (address, 5060)
    assert asked == [family]
