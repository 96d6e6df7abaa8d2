from __future__ import annotations

import pytest

from click2call.webhooks.urls import check_url, host_allowed, is_public, listed, literal_address


@pytest.mark.parametrize(
    "url",
    ["http://127.0.0.1:8099/hook", "https://crm.example.com/c2c?lead=1", "https://[::1]:9/x"],
)
def test_http_and_https_urls_are_accepted(url: str) -> None:
    assert check_url(url) == url


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("file:///etc/passwd", "http or https"),
        ("gopher://example.com/", "http or https"),
        ("https://user:pw@example.com/", "credentials"),
        ("https://user@example.com/", "credentials"),
        ("https://example.com/\r\nX-Injected: 1", "control"),
        ("https://example.com/a b", "spaces"),
        ("https:///nohost", "host"),
        ("https://example.com:99999/", "valid URL"),
        ("https://example.com/" + "a" * 2100, "2048"),
        ("https://exämple.com/", "ASCII"),
        ("https://xn--zz.example.org/", "host name"),
    ],
)
def test_other_urls_are_refused_saying_why(url: str, why: str) -> None:
    with pytest.raises(ValueError, match=why):
        check_url(url)


def test_allowed_hosts_match_exactly_or_by_wildcard_suffix() -> None:
    allowed = ["crm.example.com", "*.example.org"]
    assert host_allowed("https://crm.example.com/x", allowed)
    assert host_allowed("https://a.b.example.org/x", allowed)
    assert not host_allowed("https://example.org/x", allowed)
    assert not host_allowed("https://evil-crm.example.com/x", allowed)
    assert not host_allowed("https://crm.example.com.evil.net/x", allowed)
    assert host_allowed("https://anything.net/", [])


def test_private_and_local_addresses_are_told_apart() -> None:
    for address in ("127.0.0.1", "10.1.2.3", "192.168.0.1", "169.254.169.254", "::1", "fc00::1"):
        assert not is_public(address), address
    assert is_public("8.8.8.8") and is_public("2001:4860:4860::8888")
    assert literal_address("http://169.254.169.254/latest") == "169.254.169.254"
    assert literal_address("https://crm.example.com/") is None
    assert listed("http://127.0.0.1:9/", ["127.0.0.1"])
    assert not listed("http://127.0.0.1:9/", [])
