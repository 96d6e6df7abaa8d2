"""SIP messages (RFC 3261 §7, §20, §25): parse bytes into requests/responses and back. Pure.

    parse_datagram(data)  one UDP datagram → Request | Response (§18.3: bytes past
                          Content-Length are dropped; Content-Length may be absent)
    StreamReader.feed()   TCP/TLS bytes → the complete messages so far (Content-Length
                          frames them; CRLF keep-alives between messages are skipped)
    bytes(message)        the wire form; refuses CR, LF or NUL inside any value

Every parsing failure is a `ParseError` (a `ValueError`), never another exception.
Header values stay text and are parsed when asked for (`Message.via()`, `.from_()`…);
names are stored in their canonical full form, compact forms (`v`, `f`, `i`…) resolved.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from click2call.engines.sip.headers import (
    TOKEN,
    Address,
    ParseError,
    SipUri,
    Via,
    split_outside,
    text_cache,
)

__all__ = [
    "MAX_MESSAGE",
    "Address",
    "Message",
    "ParseError",
    "Request",
    "Response",
    "SipUri",
    "StreamReader",
    "UnsafeValue",
    "Via",
    "bad_request",
    "parse_datagram",
]

MAX_MESSAGE = 65535  # bytes of headers + body, as a UDP datagram can carry
MAX_HEADERS = 256


class UnsafeValue(ValueError):
    """A value to serialise holds CR, LF or NUL (it would inject a header)."""


COMPACT = {
    "i": "Call-ID",
    "m": "Contact",
    "e": "Content-Encoding",
    "l": "Content-Length",
    "c": "Content-Type",
    "f": "From",
    "s": "Subject",
    "k": "Supported",
    "t": "To",
    "v": "Via",
    "o": "Event",
    "r": "Refer-To",
    "x": "Session-Expires",
}
_SPELLING = {
    name.lower(): name
    for name in (
        *COMPACT.values(),
        "CSeq",
        "WWW-Authenticate",
        "Proxy-Authenticate",
        "Proxy-Authorization",
        "Authorization",
        "Record-Route",
        "Route",
        "Max-Forwards",
        "User-Agent",
        "Allow",
        "Min-SE",
        "Require",
        "RSeq",
        "RAck",
    )
}
# Headers whose comma-separated values are separate entries (§7.3.1).
_LISTS = frozenset({"Via", "Route", "Record-Route", "Contact", "Allow", "Supported", "Require"})
_METHOD = TOKEN
_UNSAFE = re.compile(r"[\r\n\x00]")
_REQUIRED = ("Via", "From", "To", "Call-ID", "CSeq")
_SINGLE = ("From", "To", "Call-ID", "CSeq", "Max-Forwards", "Content-Length")
_SPELLED = frozenset(_SPELLING.values())  # names known to be tokens
_NAMES = 512  # header spellings remembered (the same few dozen come again and again)


@text_cache(_NAMES)
def canonical(name: str) -> str:
    lower = name.lower()
    if len(lower) == 1 and lower in COMPACT:
        return COMPACT[lower]
    return _SPELLING.get(lower) or "-".join(part.capitalize() for part in name.split("-"))


# --- messages ------------------------------------------------------------------------


@dataclass(slots=True)
class Message:
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""

    def header(self, name: str) -> str | None:
        """The first value of header `name` (any spelling, compact forms too)."""
        # A name already in its canonical spelling (our own code asks ~40 times a message)
        # skips even the cached canonical(): a call of a Python function each time.
        wanted = name if name in _SPELLED else canonical(name)
        for key, value in self.headers:
            if key == wanted:
                return value
        return None

    def values(self, name: str) -> list[str]:
        """Every entry of a header, multiple lines and comma lists flattened (§7.3.1)."""
        wanted = name if name in _SPELLED else canonical(name)
        found = [value for key, value in self.headers if key == wanted]
        if wanted not in _LISTS:
            return found
        return [entry for value in found for entry in _entries(value)]

    def top_via(self) -> Via:
        """The first Via entry: what matches a response or request to its transaction."""
        for key, value in self.headers:
            if key == "Via" and (entries := _entries(value)):
                return Via.parse(entries[0])
        raise ParseError("missing Via header")

    def set(self, name: str, value: str) -> None:
        """Replace every `name` header by one with `value` (appended if absent)."""
        wanted = name if name in _SPELLED else canonical(name)
        kept = [header for header in self.headers if header[0] != wanted]
        index = next((i for i, (k, _) in enumerate(self.headers) if k == wanted), len(kept))
        kept.insert(index, (wanted, value))
        self.headers = kept

    def add(self, name: str, value: str) -> None:
        self.headers.append((name if name in _SPELLED else canonical(name), value))

    def remove(self, name: str) -> None:
        wanted = name if name in _SPELLED else canonical(name)
        if any(header[0] == wanted for header in self.headers):
            self.headers = [header for header in self.headers if header[0] != wanted]

    def required(self, name: str) -> str:
        value = self.header(name)
        if value is None:
            raise ParseError(f"missing {name} header")
        return value

    @property
    def call_id(self) -> str:
        return self.required("Call-ID").strip()

    def cseq(self) -> tuple[int, str]:
        return _cseq(self.required("CSeq"))

    def via(self) -> list[Via]:
        return [Via.parse(v) for v in self.values("Via")]

    def from_(self) -> Address:
        return Address.parse(self.required("From"))

    def to(self) -> Address:
        return Address.parse(self.required("To"))

    def addresses(self, name: str) -> list[Address]:
        return [Address.parse(v) for v in self.values(name)]

    def _head_and_body(self, start_line: str) -> bytes:
        lines = [start_line]
        for name, value in self.headers:
            if name == "Content-Length":
                continue
            if name not in _SPELLED and not TOKEN.fullmatch(name):
                raise UnsafeValue(f"header {name!r} holds a line break or NUL")
            lines.append(f"{name}: {value}")
        lines.append(f"Content-Length: {len(self.body)}")
        head = "\r\n".join(lines)
        # One look at the whole head: only the line ends we put there may be in it.
        if head.count("\n") != len(lines) - 1 or head.count("\r") != len(lines) - 1:
            raise UnsafeValue(f"header {_unsafe_name(self.headers)!r} holds a line break")
        if "\x00" in head:
            raise UnsafeValue(f"header {_unsafe_name(self.headers)!r} holds a NUL")
        return (head + "\r\n\r\n").encode() + self.body


def _unsafe_name(headers: list[tuple[str, str]]) -> str:
    """The first header whose value holds CR, LF or NUL (the start line, if none does)."""
    return next((name for name, value in headers if _UNSAFE.search(value)), "start line")


@text_cache(_NAMES)
def _entries(value: str) -> tuple[str, ...]:
    """The entries of one line of a list header (§7.3.1), stripped, empty ones dropped."""
    return tuple(part.strip() for part in split_outside(value, ",") if part.strip())


@text_cache(_NAMES)
def _cseq(value: str) -> tuple[int, str]:
    number, _, method = value.strip().partition(" ")
    method = method.strip()
    if not number.isdigit() or len(number) > 10 or not _METHOD.fullmatch(method):
        raise ParseError(f"bad CSeq {value!r}")
    if int(number) >= 2**31:
        raise ParseError(f"CSeq number out of range: {number}")
    return int(number), method


@dataclass(slots=True)
class Request(Message):
    method: str = "OPTIONS"
    uri: str = ""

    def __bytes__(self) -> bytes:
        if not _METHOD.fullmatch(self.method) or _UNSAFE.search(self.uri) or " " in self.uri:
            raise UnsafeValue("request line holds a space, line break or NUL")
        return self._head_and_body(f"{self.method} {self.uri} SIP/2.0")


@dataclass(slots=True)
class Response(Message):
    code: int = 200
    reason: str = "OK"

    def __bytes__(self) -> bytes:
        if not 100 <= self.code <= 699 or _UNSAFE.search(self.reason):
            raise UnsafeValue("status line holds a bad code, line break or NUL")
        return self._head_and_body(f"SIP/2.0 {self.code} {self.reason}")


# --- parsing -------------------------------------------------------------------------


def _start_line(line: str) -> Request | Response:
    if line.startswith("SIP/"):
        version, _, rest = line.partition(" ")
        code, _, reason = rest.partition(" ")
        if version != "SIP/2.0":
            raise ParseError(f"unsupported version {version!r}")
        if len(code) != 3 or not code.isdigit() or not 100 <= int(code) <= 699:
            raise ParseError(f"bad status code {code!r}")
        return Response(code=int(code), reason=reason)
    parts = line.split(" ")
    if len(parts) != 3 or parts[2] != "SIP/2.0" or not _METHOD.fullmatch(parts[0]):
        raise ParseError(f"bad request line {line[:80]!r}")
    if not parts[1] or any(c in parts[1] for c in "<>\t"):
        raise ParseError(f"bad Request-URI {parts[1][:80]!r}")
    if ":" not in parts[1]:
        raise ParseError(f"Request-URI without a scheme: {parts[1][:80]!r}")
    return Request(method=parts[0], uri=parts[1])


def _head(raw: bytes) -> Request | Response:
    """Start line and headers (without the blank line); body not attached."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ParseError(f"headers are not UTF-8: {exc.reason}") from None
    if "\x00" in text:
        raise ParseError("NUL in the headers")
    lines = text.replace("\r\n", "\n").split("\n")
    message = _start_line(lines[0])
    headers: list[list[str]] = []
    for line in lines[1:]:
        if line[:1] in (" ", "\t"):  # folded continuation (§7.3.1)
            if not headers:
                raise ParseError("continuation line before any header")
            headers[-1][1] += " " + line.strip()
            continue
        name, colon, value = line.partition(":")
        known = _header_name(name) if colon else None
        if known is None:
            raise ParseError(f"bad header line {line[:80]!r}")
        headers.append([known, value.strip(" \t")])
    if len(headers) > MAX_HEADERS:
        raise ParseError(f"more than {MAX_HEADERS} headers")
    message.headers = [(name, value) for name, value in headers]
    return message


@text_cache(_NAMES)
def _header_name(name: str) -> str | None:
    """The canonical form of a header name as written before its colon; None if not a token."""
    name = name.rstrip(" \t")
    return canonical(name) if TOKEN.fullmatch(name) else None


def _content_length(message: Message, required: bool) -> int | None:
    values = message.values("Content-Length")
    if not values:
        if required:
            raise ParseError("missing Content-Length on a stream transport")
        return None
    if len(set(values)) > 1 or not values[0].isdigit() or len(values[0]) > 9:
        raise ParseError(f"bad Content-Length {values[0]!r}")
    return int(values[0])


def _check(message: Request | Response) -> Request | Response:
    names = [name for name, _ in message.headers]
    for name in _REQUIRED:
        if name not in names:
            raise ParseError(f"missing {name} header")
    _number, method = message.cseq()
    if isinstance(message, Request):
        if method != message.method:
            raise ParseError(f"CSeq method {method} differs from {message.method}")
        max_forwards = message.header("Max-Forwards")
        if max_forwards is not None and not (max_forwards.isdigit() and int(max_forwards) < 256):
            raise ParseError(f"bad Max-Forwards {max_forwards!r}")
        if message.uri[:4].lower() in ("sip:", "sips") and "?" in message.uri.rpartition("@")[2]:
            raise ParseError("a Request-URI must not carry headers (?…)")
    for name in _SINGLE:
        if names.count(name) > 1:
            raise ParseError(f"more than one {name} header")
    if not message.via():  # the top Via must parse: responses follow it
        raise ParseError("empty Via header")
    message.from_()
    message.to()
    return message


def _split_head(data: bytes) -> tuple[bytes, bytes] | None:
    end = data.find(b"\r\n\r\n")
    if end >= 0:
        return data[:end], data[end + 4 :]
    end = data.find(b"\n\n")
    return None if end < 0 else (data[:end], data[end + 2 :])


def parse_datagram(data: bytes) -> Request | Response:
    """One message from one UDP datagram (§18.3)."""
    if len(data) > MAX_MESSAGE:
        raise ParseError(f"message larger than {MAX_MESSAGE} bytes")
    data = data.lstrip(b"\r\n")
    split = _split_head(data)
    if split is None:
        raise ParseError("no blank line after the headers")
    message = _head(split[0])
    length = _content_length(message, required=False)
    body = split[1]
    if length is not None:
        if length > len(body):
            raise ParseError(f"Content-Length {length} exceeds the {len(body)} bytes received")
        body = body[:length]
    message.body = body
    return _check(message)


class StreamReader:
    """Frames messages out of a TCP/TLS byte stream by Content-Length (§18.3)."""

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._pending: Request | Response | None = None
        self._length = 0
        self._scanned = 0  # bytes of the buffer already searched for the end of the head
        self.error: ParseError | None = None  # found after good messages: raised next

    def _head_end(self) -> tuple[int, int] | None:
        """Where the head ends and how long its blank line is, searching only what arrived
        since the last look (a head fed a byte at a time must not cost its length squared)."""
        start = max(0, self._scanned - 3)
        self._scanned = len(self._buffer)
        end = self._buffer.find(b"\r\n\r\n", start)
        if end >= 0:
            return end, 4
        end = self._buffer.find(b"\n\n", start)
        return None if end < 0 else (end, 2)

    def feed(self, data: bytes) -> list[Request | Response]:
        """Complete messages in `data` and what came before. A ParseError ends the stream;
        the good messages before the bad one are returned first, with it in `error`."""
        if self.error is not None:
            raise self.error
        self._buffer += data
        out: list[Request | Response] = []
        try:
            self._collect(out)
        except ParseError as exc:
            if not out:
                raise
            self.error = exc
        return out

    def _collect(self, out: list[Request | Response]) -> None:
        while True:
            if self._pending is None:
                while self._buffer[:2] == b"\r\n" or self._buffer[:1] == b"\n":
                    del self._buffer[: 2 if self._buffer[:1] == b"\r" else 1]
                    self._scanned = 0
                found = self._head_end()
                if found is None:
                    if len(self._buffer) > MAX_MESSAGE:
                        raise ParseError(f"headers longer than {MAX_MESSAGE} bytes")
                    return
                end, blank = found
                self._pending = _head(bytes(self._buffer[:end]))
                self._length = _content_length(self._pending, required=True) or 0
                if self._length > MAX_MESSAGE:
                    raise ParseError(f"Content-Length {self._length} over the limit")
                del self._buffer[: end + blank]
                self._scanned = 0
            if len(self._buffer) < self._length:
                return
            message, self._pending = self._pending, None
            message.body = bytes(self._buffer[: self._length])
            del self._buffer[: self._length]
            out.append(_check(message))


_ECHOED = {
    b"via": "Via",
    b"v": "Via",
    b"from": "From",
    b"f": "From",
    b"to": "To",
    b"t": "To",
    b"call-id": "Call-ID",
    b"i": "Call-ID",
    b"cseq": "CSeq",
}


def bad_request(data: bytes) -> bytes | None:
    """A 400 answering a request that did not parse, with its Via, From, To, Call-ID and
    CSeq lines copied (§8.2.6); None when those cannot be found (then it is dropped)."""
    lines = data[:MAX_MESSAGE].split(b"\r\n\r\n", 1)[0].split(b"\r\n")
    if lines[0].startswith((b"SIP/", b"ACK ")) or b" SIP/2.0" not in lines[0]:
        return None  # a response, an ACK (never answered), or not SIP at all
    echoed: list[tuple[str, bytes]] = []
    for line in lines[1:]:
        name, colon, value = line.partition(b":")
        canonical_name = _ECHOED.get(name.strip().lower()) if colon else None
        if canonical_name is not None:
            echoed.append((canonical_name, value.strip()))
    if {name for name, _ in echoed} != set(_ECHOED.values()):
        return None
    try:
        head = [f"{name}: {value.decode()}" for name, value in echoed]
    except UnicodeDecodeError:
        return None
    if any(_UNSAFE.search(line) for line in head):
        return None
    return (
        "\r\n".join(["SIP/2.0 400 Bad Request", *head, "Content-Length: 0"]) + "\r\n\r\n"
    ).encode()
