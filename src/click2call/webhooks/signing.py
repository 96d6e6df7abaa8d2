"""Standard Webhooks signatures (https://www.standardwebhooks.com), so receivers can verify
with any of its libraries: HMAC-SHA256 over "<webhook-id>.<webhook-timestamp>.<body>",
keyed with the base64-decoded secret (after its `whsec_` prefix). Pure."""

from __future__ import annotations

import base64
import hashlib
import hmac


def secret_key(secret: str) -> bytes:
    return base64.b64decode(secret.removeprefix("whsec_"))


def signature(secret: str, message_id: str, timestamp: int, body: bytes) -> str:
    signed = f"{message_id}.{timestamp}.".encode() + body
    digest = hmac.new(secret_key(secret), signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def headers(secret: str, message_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    return {
        "webhook-id": message_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": signature(secret, message_id, timestamp, body),
        "content-type": "application/json",
    }


def new_secret(random_bytes: bytes) -> str:
    """A secret in the form the settings take, from at least 24 random bytes."""
    return "whsec_" + base64.b64encode(random_bytes).decode()
