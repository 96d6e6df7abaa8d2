"""Digest authentication for a UAC (RFC 3261 §22, RFC 7616, RFC 8760). Pure.

`parse_challenge` reads a WWW-Authenticate / Proxy-Authenticate value; `authorization`
answers it. MD5 and SHA-256 (and their -sess forms), `qop=auth` with a nonce count and a
client nonce (injected, so tests are deterministic), or RFC 2069's form when the server
offers no qop. Passwords only ever enter a hash: no repr, log or error names them.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

from click2call.engines.sip.message import ParseError

_HASHES = {"MD5": hashlib.md5, "SHA-256": hashlib.sha256}
_PARAM = re.compile(r'\s*([A-Za-z0-9_-]+)\s*=\s*("(?:[^"\\]|\\.)*"|[^\s,]*)\s*(?:,|$)')


@dataclass(frozen=True, slots=True)
class Challenge:
    realm: str
    nonce: str
    algorithm: str = "MD5"
    qop: tuple[str, ...] = ()
    opaque: str | None = None
    stale: bool = False

    @property
    def supported(self) -> bool:
        return self.algorithm.upper().removesuffix("-SESS") in _HASHES and (
            not self.qop or "auth" in self.qop
        )


def parse_challenge(value: str) -> Challenge:
    scheme, _, rest = value.strip().partition(" ")
    if scheme.lower() != "digest":
        raise ParseError(f"unsupported authentication scheme {scheme!r}")
    params: dict[str, str] = {}
    position = 0
    rest = rest.strip()
    while position < len(rest):
        match = _PARAM.match(rest, position)
        if not match or match.end() == position:
            raise ParseError(f"bad challenge parameter near {rest[position : position + 30]!r}")
        raw = match.group(2)
        if raw.startswith('"'):
            raw = re.sub(r"\\(.)", r"\1", raw[1:-1])
        params[match.group(1).lower()] = raw
        position = match.end()
    if "realm" not in params or not params.get("nonce"):
        raise ParseError("challenge without realm or nonce")
    qop = tuple(q.strip().lower() for q in params.get("qop", "").split(",") if q.strip())
    return Challenge(
        realm=params["realm"],
        nonce=params["nonce"],
        algorithm=params.get("algorithm", "MD5"),
        qop=qop,
        opaque=params.get("opaque"),
        stale=params.get("stale", "").lower() == "true",
    )


def best_challenge(values: list[str]) -> Challenge | None:
    """The strongest challenge we can answer among several (RFC 8760 §2.4: SHA-256 first)."""
    usable = []
    for value in values:
        try:
            challenge = parse_challenge(value)
        except ParseError:
            continue
        if challenge.supported:
            usable.append(challenge)
    usable.sort(key=lambda c: not c.algorithm.upper().startswith("SHA-256"))
    return usable[0] if usable else None


def _quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def authorization(
    challenge: Challenge,
    *,
    method: str,
    uri: str,
    username: str,
    password: str,
    cnonce: str,
    nonce_count: int = 1,
) -> str:
    """The Authorization / Proxy-Authorization value answering `challenge`."""
    algorithm = challenge.algorithm.upper()
    digest = _HASHES[algorithm.removesuffix("-SESS")]

    def h(text: str) -> str:
        return digest(text.encode()).hexdigest()

    ha1 = h(f"{username}:{challenge.realm}:{password}")
    if algorithm.endswith("-SESS"):
        ha1 = h(f"{ha1}:{challenge.nonce}:{cnonce}")
    ha2 = h(f"{method}:{uri}")
    fields = [
        f"username={_quote(username)}",
        f"realm={_quote(challenge.realm)}",
        f"nonce={_quote(challenge.nonce)}",
        f"uri={_quote(uri)}",
    ]
    if "auth" in challenge.qop:
        nc = f"{nonce_count:08x}"
        response = h(f"{ha1}:{challenge.nonce}:{nc}:{cnonce}:auth:{ha2}")
        fields += [f"response={_quote(response)}", "qop=auth", f"nc={nc}"]
        fields.append(f"cnonce={_quote(cnonce)}")
    else:
        fields.append(f"response={_quote(h(f'{ha1}:{challenge.nonce}:{ha2}'))}")
    fields.append(f"algorithm={challenge.algorithm}")
    if challenge.opaque is not None:
        fields.append(f"opaque={_quote(challenge.opaque)}")
    return "Digest " + ", ".join(fields)
