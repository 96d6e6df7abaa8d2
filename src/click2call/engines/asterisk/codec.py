"""The Asterisk Manager Interface wire format, sans-IO: bytes in, messages out, and back.

    banner   "Asterisk Call Manager/9.0.0" CRLF            once, when the connection opens
    message  ("Key: Value" CRLF)+ CRLF                      an action, a response or an event

`AmiDecoder.feed()` takes bytes as they arrive (a message may span reads, a read may
hold several messages) and returns what is complete; given `keep`, it first shows each
message's raw header block to it and skips, unparsed, those it refuses (most of what a
busy PBX sends concerns no call of ours). `Message.__bytes__` writes a
message back; it refuses CR, LF and NUL in any key or value, because on a real Asterisk
one CR LF inside a value adds a header and an empty line starts a new action (see
tests/fixtures/asterisk-ami/injection-crlf*.txt). Headers keep their order and
duplicates (`Variable:` repeats); `get()` returns the first copy, as Asterisk reads it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

_BANNER_PREFIX = b"Asterisk Call Manager/"
_FORBIDDEN = ("\r", "\n", "\x00")


class AmiProtocolError(Exception):
    """The peer sent something that is not AMI."""


class UnsafeValue(ValueError):
    """A key or value would change the meaning of the message on the wire."""


@dataclass(frozen=True, slots=True)
class Banner:
    version: str  # "9.0.0"


@dataclass(frozen=True, slots=True)
class Message:
    headers: tuple[tuple[str, str], ...]
    # Name → first value, under the lower-cased name and as the first copy spells it (most
    # lookups use Asterisk's own spelling: one dict hit): a message is read a few times
    # (its reply matching, its call's lookup, the tracker), each by name. Built as a
    # received message is parsed, else on the first get().
    _first: dict[str, str] | None = field(default=None, init=False, repr=False, compare=False)

    @classmethod
    def action(cls, name: str, headers: Iterable[tuple[str, str]] = ()) -> Message:
        return cls((("Action", name), *headers))

    def get(self, key: str, default: str | None = None) -> str | None:
        first = self._first
        if first is None:
            first = {}
            for k, v in self.headers:
                _index(first, k, v)
            object.__setattr__(self, "_first", first)
        value = first.get(key)
        if value is None:
            value = first.get(key.lower(), default)
        return value

    def __getitem__(self, key: str) -> str:
        value = self.get(key)
        if value is None:
            raise KeyError(key)
        return value

    def get_all(self, key: str) -> list[str]:
        wanted = key.lower()
        return [v for k, v in self.headers if k.lower() == wanted]

    @property
    def event(self) -> str | None:
        return self.get("Event")

    @property
    def response(self) -> str | None:
        return self.get("Response")

    @property
    def action_id(self) -> str | None:
        return self.get("ActionID")

    def __bytes__(self) -> bytes:
        lines = []
        for key, value in self.headers:
            check_safe(key, value)
            lines.append(f"{key}: {value}\r\n")
        return ("".join(lines) + "\r\n").encode()

    def redacted(self, *secret_keys: str) -> Message:
        """A copy safe to log: the named headers' values replaced."""
        hidden = {k.lower() for k in secret_keys}
        return Message(tuple((k, "***" if k.lower() in hidden else v) for k, v in self.headers))


def check_safe(key: str, value: str) -> None:
    for char in _FORBIDDEN:
        if char in key or char in value:
            name = {"\r": "CR", "\n": "LF", "\x00": "NUL"}[char]
            raise UnsafeValue(f"AMI header {key!r} would carry a {name}")
    if ":" in key or not key:
        raise UnsafeValue(f"AMI header name {key!r} is not a plain name")


def _index(first: dict[str, str], key: str, value: str) -> None:
    """Add a header to a message's name index, unless an earlier copy of it is there."""
    lower = key.lower()
    if lower not in first:
        first[lower] = first[key] = value


def _parse_block(block: bytes) -> Message:
    # One decode for the block: CR and LF never occur inside a UTF-8 multi-byte sequence,
    # so this splits where splitting the bytes would. The name index is built on the way.
    headers = []
    first: dict[str, str] = {}
    for line in block.decode("utf-8", errors="replace").split("\r\n"):
        key, sep, value = line.partition(": ")
        if not sep:
            # "Key:" with an empty value is written without the space.
            key, sep, value = line.partition(":")
        if not sep:
            raise AmiProtocolError(f"not a header line: {line[:80]!r}")
        headers.append((key, value))
        lower = key.lower()  # as _index(), inline: this loop runs for every header received
        if lower not in first:
            first[lower] = first[key] = value
    message = Message(tuple(headers))
    object.__setattr__(message, "_first", first)
    return message


class AmiDecoder:
    """Turns the bytes Asterisk sends into a `Banner` then `Message`s."""

    def __init__(
        self, max_message: int = 1 << 20, keep: Callable[[bytes], bool] | None = None
    ) -> None:
        self._buffer = bytearray()
        self._banner_seen = False
        self._max_message = max_message
        self._keep = keep
        self.skipped = 0  # messages `keep` refused

    def feed(self, data: bytes) -> list[Banner | Message]:
        buffer = self._buffer
        # A message can only end in what arrived now (or in the 3 bytes before it): the
        # rest was searched already, and is neither searched nor copied again.
        search_from = max(len(buffer) - 3, 0)
        buffer += data
        out: list[Banner | Message] = []
        if not self._banner_seen:
            end = buffer.find(b"\r\n")
            if end < 0:
                self._check_size()
                return out
            line = bytes(buffer[:end])
            if not line.startswith(_BANNER_PREFIX):
                raise AmiProtocolError(f"not an AMI banner: {line[:80]!r}")
            out.append(Banner(line[len(_BANNER_PREFIX) :].decode("ascii", errors="replace")))
            del buffer[: end + 2]
            self._banner_seen, search_from = True, 0
        if buffer.find(b"\r\n\r\n", search_from) < 0:
            self._check_size()
            return out
        # Cut in one pass, as the loop of finds it replaces would: the last piece is a
        # message not yet whole (often empty), kept for the next feed.
        *blocks, rest = bytes(buffer).split(b"\r\n\r\n")
        del buffer[: len(buffer) - len(rest)]
        keep = self._keep
        for block in blocks:
            if not block:
                continue
            if keep is not None and not keep(block):
                self.skipped += 1
                continue
            out.append(_parse_block(block))
        self._check_size()
        return out

    def _check_size(self) -> None:
        if len(self._buffer) > self._max_message:
            raise AmiProtocolError("message larger than the limit; not AMI?")

    @property
    def pending(self) -> int:
        """Bytes received that do not yet make a whole message."""
        return len(self._buffer)
