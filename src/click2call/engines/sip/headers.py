"""The values inside SIP headers (RFC 3261 §19.1, §20, §25): URIs, addresses, Via. Pure.

Parameter names are lower-cased when parsed (they are case-insensitive, §19.1.4), so
`transport=UDP` and `TRANSPORT=udp` read the same. Every failure is a `ParseError`.

The parsed values are immutable, and a call reads the same few header values many times
(a From is checked on arrival, then matched, copied into replies and the dialog): the
latest parses are kept, keyed by their text, in small bounded caches.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from typing import TypeVar


class ParseError(ValueError):
    """The bytes are not a SIP message we accept; the text says which part and why."""


TOKEN = re.compile(r"[A-Za-z0-9.!%*_+`'~-]+")

Params = tuple[tuple[str, str | None], ...]


_PARSED = 256  # values of each kind kept parsed: a few calls' worth of headers
_LONGEST = 512  # characters of a text worth keeping: a peer's huge values are not kept
Parsed = TypeVar("Parsed")


def text_cache(size: int) -> Callable[[Callable[[str], Parsed]], Callable[[str], Parsed]]:
    """Keep the results of a pure function of one text for its latest `size` texts (not
    for failures, nor for texts over `_LONGEST` characters, which a peer could send to fill
    the cache with 64 KiB values)."""

    def wrap(function: Callable[[str], Parsed]) -> Callable[[str], Parsed]:
        kept = lru_cache(maxsize=size)(function)

        def parse(text: str) -> Parsed:
            return kept(text) if len(text) <= _LONGEST else function(text)

        return parse

    return wrap


def split_outside(text: str, sep: str) -> list[str]:
    """Split on `sep` outside quoted strings and <...> (header lists, parameters)."""
    if '"' not in text:  # the usual case, at C speed: rejoin pieces cut inside <...>
        pieces = text.split(sep)
        if "<" not in text:
            return pieces
        joined: list[str] = []
        for piece in pieces:
            if joined and joined[-1].rfind("<") > joined[-1].rfind(">"):
                joined[-1] += sep + piece
            else:
                joined.append(piece)
        return joined
    parts, start, quoted, angle, i = [], 0, False, False, 0
    while i < len(text):
        ch = text[i]
        if quoted:
            if ch == "\\":
                i += 1
            elif ch == '"':
                quoted = False
        elif ch == '"':
            quoted = True
        elif ch == "<":
            angle = True
        elif ch == ">":
            angle = False
        elif ch == sep and not angle:
            parts.append(text[start:i])
            start = i + 1
        i += 1
    if quoted:
        raise ParseError(f"unbalanced quotes in {text!r}")
    parts.append(text[start:])
    return parts


def _params(items: list[str]) -> Params:
    out: list[tuple[str, str | None]] = []
    for item in items:
        name, eq, value = item.partition("=")
        name = name.strip().lower()
        if not TOKEN.fullmatch(name):
            raise ParseError(f"bad parameter {item.strip()!r}")
        out.append((name, value.strip() if eq else None))
    return tuple(out)


def _format_params(params: Params) -> str:
    return "".join(f";{n}" if v is None else f";{n}={v}" for n, v in params)


def _param(params: Params, name: str) -> str | None:
    for key, value in params:
        if key == name:
            return value
    return None


_VIA = re.compile(r"\s*SIP\s*/\s*2\.0\s*/\s*([A-Za-z0-9-]+)\s+(\S.*)", re.DOTALL | re.I)
_HOST = re.compile(r"(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+)(?::([0-9]{1,5}))?")


def _host_port(text: str, what: str) -> tuple[str, int | None]:
    match = _HOST.fullmatch(text.strip())
    if not match:
        raise ParseError(f"bad host in {what}: {text!r}")
    port = None if match.group(2) is None else int(match.group(2))
    if port is not None and port > 65535:
        raise ParseError(f"port out of range in {what}: {text!r}")
    return match.group(1), port


def _format_host(host: str, port: int | None) -> str:
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return host if port is None else f"{host}:{port}"


@dataclass(frozen=True, slots=True)
class SipUri:
    """sip:/sips: URI (§19.1). Parameter names are lower-cased (they are case-insensitive)."""

    host: str
    user: str | None = None
    port: int | None = None
    scheme: str = "sip"
    params: Params = ()
    headers: str = ""  # ?name=value&… kept as written

    @classmethod
    def parse(cls, text: str) -> SipUri:
        return _uri(text)

    def param(self, name: str) -> str | None:
        return _param(self.params, name)

    @property
    def transport(self) -> str:
        value = self.param("transport")
        if value:
            return value.lower()
        return "tls" if self.scheme == "sips" else "udp"

    def __str__(self) -> str:
        user = "" if self.user is None else f"{self.user}@"
        tail = f"?{self.headers}" if self.headers else ""
        host = _format_host(self.host, self.port)
        return f"{self.scheme}:{user}{host}{_format_params(self.params)}{tail}"


@dataclass(frozen=True, slots=True)
class Address:
    """name-addr or addr-spec with header parameters (From, To, Contact, Route, §20.10)."""

    uri: SipUri
    display: str | None = None
    params: Params = ()

    @classmethod
    def parse(cls, text: str) -> Address:
        return _address(text)

    @property
    def tag(self) -> str | None:
        return _param(self.params, "tag")

    def with_tag(self, tag: str) -> Address:
        params = (*(p for p in self.params if p[0] != "tag"), ("tag", tag))
        return Address(self.uri, self.display, params)

    def __str__(self) -> str:
        display = f"{self.display} " if self.display else ""
        return f"{display}<{self.uri}>{_format_params(self.params)}"


def _closing_quote(text: str) -> int:
    i = 1
    while i < len(text):
        if text[i] == "\\":
            i += 2
            continue
        if text[i] == '"':
            return i
        i += 1
    raise ParseError(f"unbalanced quotes in {text!r}")


@dataclass(frozen=True, slots=True)
class Via:
    """One Via entry (§20.42) with `received` and `rport` (RFC 3581)."""

    transport: str
    host: str
    port: int | None = None
    params: Params = ()

    @classmethod
    def parse(cls, text: str) -> Via:
        return _via(text)

    @property
    def branch(self) -> str | None:
        return _param(self.params, "branch")

    def param(self, name: str) -> str | None:
        return _param(self.params, name)

    def __str__(self) -> str:
        host = _format_host(self.host, self.port)
        return f"SIP/2.0/{self.transport} {host}{_format_params(self.params)}"


@text_cache(_PARSED)
def _uri(text: str) -> SipUri:
    scheme, colon, rest = text.strip().partition(":")
    scheme = scheme.lower()
    if not colon or scheme not in ("sip", "sips"):
        raise ParseError(f"not a sip: or sips: URI: {text!r}")
    user: str | None = None
    if "@" in rest:  # the user part may hold ? and ; (RFC 4475 §3.1.1.2)
        user, _, rest = rest.rpartition("@")
        if not user or any(c in user for c in ' <>"\t'):
            raise ParseError(f"bad user part in {text!r}")
    rest, _, headers = rest.partition("?")
    hostport, *params = rest.split(";")
    host, port = _host_port(hostport, "URI")
    return SipUri(host.lower(), user, port, scheme, _params(params), headers)


@text_cache(_PARSED)
def _address(text: str) -> Address:
    text = text.strip()
    display: str | None = None
    if "<" in text or text.startswith('"'):
        if text.startswith('"'):
            end = _closing_quote(text)
            display, text = text[: end + 1], text[end + 1 :].lstrip()
        start, end = text.find("<"), text.find(">")
        if start < 0 or end < start:
            raise ParseError(f"unbalanced <> in address {text!r}")
        if display is None and text[:start].strip():
            display = text[:start].strip()
        uri, tail = _uri(text[start + 1 : end]), text[end + 1 :].strip()
    else:
        uri_text, _, tail = text.partition(";")
        tail = f";{tail}" if tail else ""
        if any(c in uri_text for c in ",?"):
            raise ParseError(f"an address with , or ? needs <>: {text!r}")
        uri = _uri(uri_text)
    if tail and not tail.startswith(";"):
        raise ParseError(f"unexpected text after address: {tail!r}")
    return Address(uri, display, _params(split_outside(tail, ";")[1:]))


@text_cache(_PARSED)
def _via(text: str) -> Via:
    match = _VIA.match(text)
    if not match:
        raise ParseError(f"bad Via {text[:80]!r}")
    sent_by, *params = split_outside(match.group(2), ";")
    host, port = _host_port(sent_by, "Via")
    return Via(match.group(1).upper(), host, port, _params(params))
