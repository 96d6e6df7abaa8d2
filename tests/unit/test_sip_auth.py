"""Digest answers checked against RFC 7616 §3.9.1's worked example and RFC 2617's form."""

from __future__ import annotations

import re
from hashlib import md5

import pytest

from click2call.engines.sip.auth import authorization, best_challenge, parse_challenge
from click2call.engines.sip.message import ParseError

RFC7616 = (
    'Digest realm="http-auth@example.org", qop="auth, auth-int", algorithm={alg}, '
    'nonce="7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v", '
    'opaque="FQhe/qaS625SOIJjr+5rKkIi9ruTgD9a9Js/YRfHvxM"'
)
CNONCE = "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ"


def fields(value: str) -> dict[str, str]:
    return dict(re.findall(r'(\w+)="?([^",]*)"?', value.removeprefix("Digest ")))


@pytest.mark.parametrize(
    ("alg", "expected"),
    [
        ("MD5", "8ca523f5e9506fed4657c9700eebdbec"),
        ("SHA-256", "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1"),
    ],
)
def test_rfc7616_example(alg: str, expected: str) -> None:
    challenge = parse_challenge(RFC7616.format(alg=alg))
    assert challenge.qop == ("auth", "auth-int")
    value = authorization(
        challenge,
        method="GET",
        uri="/dir/index.html",
        username="Mufasa",
        password="Circle of Life",
        cnonce=CNONCE,
    )
    got = fields(value)
    assert got["response"] == expected
    assert (got["nc"], got["qop"], got["cnonce"]) == ("00000001", "auth", CNONCE)
    assert got["opaque"] == "FQhe/qaS625SOIJjr+5rKkIi9ruTgD9a9Js/YRfHvxM"
    assert "Circle of Life" not in value


def test_without_qop_the_rfc2617_form() -> None:
    challenge = parse_challenge('Digest realm="r", nonce="n", algorithm=MD5')
    value = authorization(
        challenge, method="INVITE", uri="sip:200@h", username="u", password="p", cnonce="c"
    )
    ha1, ha2 = md5(b"u:r:p").hexdigest(), md5(b"INVITE:sip:200@h").hexdigest()
    assert fields(value)["response"] == md5(f"{ha1}:n:{ha2}".encode()).hexdigest()
    assert "qop" not in value and "cnonce" not in value


def test_nonce_count_is_hex_of_eight() -> None:
    challenge = parse_challenge('Digest realm="r", nonce="n", qop="auth"')
    value = authorization(
        challenge,
        method="BYE",
        uri="sip:a@b",
        username="u",
        password="p",
        cnonce="c",
        nonce_count=26,
    )
    assert fields(value)["nc"] == "0000001a"


def test_sha256_is_preferred_and_unknown_schemes_skipped() -> None:
    best = best_challenge(
        [
            'Basic realm="x"',
            'Digest realm="r", nonce="n", algorithm=MD5',
            'Digest realm="r", nonce="n", algorithm=SHA-256',
            'Digest realm="r", nonce="n", algorithm=SHA-512-256',
        ]
    )
    assert best is not None and best.algorithm == "SHA-256"
    assert best_challenge(['Digest realm="r", nonce="n", qop="auth-int"']) is None


@pytest.mark.parametrize("bad", ['Digest nonce="n"', 'Digest realm="r", nonce=', "Digest ,,,"])
def test_malformed_challenges_raise_parse_error(bad: str) -> None:
    with pytest.raises(ParseError):
        parse_challenge(bad)
