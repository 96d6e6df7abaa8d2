"""Behind a TLS-terminating reverse proxy: the proxies named in `forwarded_allow_ips` say
the client spoke https (the dashboard's cookies are then Secure); nobody else can."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from tests.integration.conftest import launch

HTTPS = {"X-Forwarded-Proto": "https", "X-Forwarded-For": "203.0.113.9"}


@pytest.mark.parametrize(("trusted", "secure"), [('["127.0.0.1"]', True), ('["192.0.2.1"]', False)])
def test_cookies_are_secure_only_when_a_trusted_proxy_says_https(
    tmp_path: Path, trusted: str, secure: bool
) -> None:
    process, server = launch(tmp_path, server_extra=f"forwarded_allow_ips = {trusted}")
    try:
        plain = httpx.get(f"{server.base_url}/ui/signin")
        proxied = httpx.get(f"{server.base_url}/ui/signin", headers=HTTPS)
    finally:
        process.stop()
    assert plain.status_code == proxied.status_code == 200
    assert "secure" not in plain.headers["set-cookie"].lower()
    assert ("; secure" in proxied.headers["set-cookie"].lower()) is secure
