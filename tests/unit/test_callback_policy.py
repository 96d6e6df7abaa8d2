from __future__ import annotations

import pytest
from pydantic import SecretStr

from click2call.errors import InvalidInput
from click2call.policy import check_callback
from click2call.settings import TenantCallbacks
from click2call.webhooks.signing import new_secret

SIGNS = SecretStr(new_secret(b"s" * 32))


def test_without_a_secret_no_callback_is_taken() -> None:
    with pytest.raises(InvalidInput, match="no secret"):
        check_callback("https://crm.example.com/h", TenantCallbacks())


@pytest.mark.parametrize(
    "url", ["http://127.0.0.1:6379/", "http://169.254.169.254/latest/meta-data", "http://[::1]/"]
)
def test_a_callers_url_may_not_reach_into_the_servers_network(url: str) -> None:
    with pytest.raises(InvalidInput, match="private or local address"):
        check_callback(url, TenantCallbacks(secret=SIGNS))


def test_the_operator_may_list_a_local_receiver() -> None:
    check_callback(
        "http://127.0.0.1:8099/h", TenantCallbacks(secret=SIGNS, allowed_hosts=["127.0.0.1"])
    )
    check_callback("https://crm.example.com/h", TenantCallbacks(secret=SIGNS))
