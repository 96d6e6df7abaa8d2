"""The authentication decision, without HTTP."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from click2call.auth import Credentials, authenticate, canonical_query, needs_setup, sign
from click2call.errors import Forbidden, Unauthorized, UnknownTenant
from click2call.settings import Settings
from click2call.store import ApiKey

SETTINGS = Settings(
    tenants=[  # type: ignore[list-item]
        {"name": "default"},
        {"name": "open", "auth": {"allow_unauthenticated": True}},
        {"name": "signed", "auth": {"link_secret": "s3cret"}},
        {"name": "office", "auth": {"allowed_ips": ["10.1.0.0/16", "2001:db8::/32"]}},
    ]
)
KEY = ApiKey(7, "office", "c2c_abcdef", None, datetime(2026, 1, 1, tzinfo=UTC), None)
NOW = 1_800_000_000.0


def lookup(key: str) -> ApiKey | None:
    return KEY if key == "c2c_good" else None


def creds(key: str | None = None, ip: str | None = "127.0.0.1", **params: str) -> Credentials:
    return Credentials(key, tuple(params.items()), ip)


def test_a_key_names_its_tenant_and_may_not_claim_another() -> None:
    identity = authenticate(SETTINGS, creds("c2c_good"), None, lookup, NOW)
    assert (identity.tenant, identity.method, identity.key_id) == ("office", "key", 7)
    assert authenticate(SETTINGS, creds("c2c_good"), "office", lookup, NOW).tenant == "office"
    with pytest.raises(Forbidden):
        authenticate(SETTINGS, creds("c2c_good"), "open", lookup, NOW)
    with pytest.raises(Unauthorized, match="invalid or revoked"):
        authenticate(SETTINGS, creds("c2c_bad"), None, lookup, NOW)


def test_nothing_configured_means_nothing_allowed() -> None:
    with pytest.raises(Unauthorized, match="authentication required"):
        authenticate(SETTINGS, creds(), None, lookup, NOW)
    assert needs_setup(SETTINGS.tenants[0], has_keys=False)
    assert not needs_setup(SETTINGS.tenants[0], has_keys=True)
    assert authenticate(SETTINGS, creds(), "open", lookup, NOW).method == "unauthenticated"
    with pytest.raises(UnknownTenant):
        authenticate(SETTINGS, creds(), "nobody", lookup, NOW)


@pytest.mark.parametrize(
    ("ip", "allowed"),
    [
        ("10.1.2.3", True),
        ("10.2.0.1", False),
        ("2001:db8::5", True),
        ("garbage", False),
        (None, False),
    ],
)
def test_allowed_addresses(ip: str | None, allowed: bool) -> None:
    if allowed:
        assert (
            authenticate(SETTINGS, creds(ip=ip), "office", lookup, NOW).method == "allowed address"
        )
    else:
        with pytest.raises(Unauthorized):
            authenticate(SETTINGS, creds(ip=ip), "office", lookup, NOW)


def test_signed_links() -> None:
    params = {"extension": "200", "destination": "0502760206", "exp": str(int(NOW) + 60)}
    sig = sign(params.items(), "s3cret")
    ok = authenticate(SETTINGS, creds(**params, sig=sig), "signed", lookup, NOW)
    assert ok.method == "signed link"
    for changed, why in (
        ({**params, "destination": "0509999999", "sig": sig}, "does not match"),
        ({**params, "sig": sig.upper()[:-1] + "0"}, "does not match"),
        (
            {
                **params,
                "exp": str(int(NOW) - 1),
                "sig": sign({**params, "exp": str(int(NOW) - 1)}.items(), "s3cret"),
            },
            "expired",
        ),
        ({**params, "exp": "soon", "sig": sig}, "unix time"),
        (params, "needs both"),
    ):
        with pytest.raises(Unauthorized, match=why):
            authenticate(SETTINGS, creds(**changed), "signed", lookup, NOW)
    with pytest.raises(Unauthorized, match="not enabled"):
        authenticate(SETTINGS, creds(**params, sig=sig), "open", lookup, NOW)


def test_the_canonical_query_is_sorted_encoded_and_leaves_out_sig() -> None:
    pairs = [("b", "2 3"), ("a", "é&"), ("sig", "x")]
    assert canonical_query(pairs) == "a=%C3%A9%26&b=2%203"
    assert sign(pairs, "k") == sign(list(reversed(pairs)), "k")


def test_a_signature_out_of_the_hex_alphabet_is_refused_not_a_crash() -> None:
    params = {"extension": "200", "destination": "0502760206", "exp": str(int(NOW) + 60)}
    with pytest.raises(Unauthorized, match="does not match"):
        authenticate(SETTINGS, creds(**params, sig="é"), "signed", lookup, NOW)
