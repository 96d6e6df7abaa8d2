from __future__ import annotations

import time

import pytest
from standardwebhooks import Webhook, WebhookVerificationError

from click2call.webhooks import signing

SECRET = signing.new_secret(bytes(range(32)))


def test_a_standard_webhooks_library_verifies_our_signature() -> None:
    body = b'{"type":"call.ended","sequence":9}'
    now = int(time.time())
    headers = signing.headers(SECRET, "msg_17", now, body)
    assert Webhook(SECRET).verify(body, headers) == {"type": "call.ended", "sequence": 9}
    assert headers["webhook-id"] == "msg_17"
    assert headers["webhook-signature"].startswith("v1,")


def test_a_changed_body_or_another_secret_fails_verification() -> None:
    body = b'{"type":"call.ended"}'
    headers = signing.headers(SECRET, "msg_1", int(time.time()), body)
    with pytest.raises(WebhookVerificationError):
        Webhook(SECRET).verify(b'{"type":"call.connected"}', headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(signing.new_secret(bytes(32))).verify(body, headers)


def test_known_vector() -> None:
    # HMAC-SHA256(key=0x00..0x1f, "msg_1.1700000000.{}"), computed independently with openssl.
    assert signing.signature(SECRET, "msg_1", 1700000000, b"{}") == (
        "v1,fhksJF5ElKjlPoT/jtefCO5XjQPvhf7Dhf/8R1ad9yU="
    )
