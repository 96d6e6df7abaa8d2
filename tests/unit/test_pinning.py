"""webhooks/pinning.py: a caller's callback host is resolved once, every address checked,
and the request pinned to a checked address with the URL's own Host and TLS name."""

from __future__ import annotations

import socket

import pytest

from click2call.webhooks.pinning import Refused, pinned_targets, resolve


def _resolver(*answers: list[str]):  # type: ignore[no-untyped-def]
    asked: list[tuple[str, int]] = []
    replies = iter(answers)

    async def lookup(host: str, port: int) -> list[str]:
        asked.append((host, port))
        return next(replies)

    lookup.asked = asked  # type: ignore[attr-defined]
    return lookup


async def test_an_https_callback_is_pinned_to_its_checked_address() -> None:
    lookup = _resolver(["93.184.215.14", "2606:2800:21f:cb07:6820:80da:af6b:8b2c"])
    targets = await pinned_targets("https://crm.example.com/hook?lead=7", lookup)
    assert lookup.asked == [("crm.example.com", 443)]  # type: ignore[attr-defined]
    assert [str(t.url) for t in targets] == [
        "https://93.184.215.14/hook?lead=7",
        "https://[2606:2800:21f:cb07:6820:80da:af6b:8b2c]/hook?lead=7",
    ]
    assert targets[0].headers == {"Host": "crm.example.com"}
    # the certificate is checked against the name, not the address
    assert targets[0].extensions == {"sni_hostname": "crm.example.com"}


async def test_http_keeps_its_port_in_the_host_header_and_sends_no_server_name() -> None:
    (target,) = await pinned_targets("http://crm.example.com:8080/h", _resolver(["8.8.8.8"]))
    assert str(target.url) == "http://8.8.8.8:8080/h"
    assert target.headers == {"Host": "crm.example.com:8080"}
    assert target.extensions == {}


@pytest.mark.parametrize("private", ["127.0.0.1", "10.1.2.3", "169.254.169.254", "::1"])
async def test_one_private_address_among_public_ones_refuses_the_host(private: str) -> None:
    with pytest.raises(Refused, match=rf"private or local address \({private}\)"):
        await pinned_targets("https://rebind.example.com/", _resolver(["8.8.8.8", private]))


async def test_a_host_that_does_not_resolve_is_refused_saying_so() -> None:
    async def fails(host: str, port: int) -> list[str]:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    with pytest.raises(Refused, match=r"callback host nowhere\.invalid does not resolve"):
        await pinned_targets("https://nowhere.invalid/", fails)
    with pytest.raises(Refused, match="does not resolve"):
        await pinned_targets("https://empty.example/", _resolver([]))


async def test_resolve_asks_the_system_resolver() -> None:
    assert await resolve("127.0.0.1", 80) == ["127.0.0.1"]
    assert "127.0.0.1" in await resolve("localhost", 80) or "::1" in await resolve("localhost", 80)


async def test_an_international_name_is_resolved_and_named_in_its_ascii_form() -> None:
    """straße.de is xn--strae-oqa.de (IDNA 2008); handed the Unicode form, getaddrinfo and
    ssl re-encode it with IDNA 2003 as strasse.de: another registrant's domain."""
    lookup = _resolver(["93.184.215.14"])
    (target,) = await pinned_targets("https://xn--strae-oqa.de/hook", lookup)
    assert lookup.asked == [("xn--strae-oqa.de", 443)]  # type: ignore[attr-defined]
    assert target.extensions == {"sni_hostname": "xn--strae-oqa.de"}
    assert target.headers == {"Host": "xn--strae-oqa.de"}
