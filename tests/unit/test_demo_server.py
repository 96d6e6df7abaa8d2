"""demo/server.py: waiting until every worker listens, whichever address family."""

from __future__ import annotations

import socket

import pytest

from click2call.demo.server import wait_listening


@pytest.mark.parametrize(
    ("family", "host"), [(socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::1")]
)
def test_listening_sockets_are_counted_on_ipv4_and_ipv6(
    family: socket.AddressFamily, host: str
) -> None:
    with socket.socket(family) as first, socket.socket(family) as second:
        for s in (first, second):
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        first.bind((host, 0))
        port = first.getsockname()[1]
        second.bind((host, port))
        first.listen()
        with pytest.raises(RuntimeError, match=f"1 of 2 workers listen on port {port}"):
            wait_listening(port, 2, timeout=0.2)
        second.listen()
        wait_listening(port, 2, timeout=2)
