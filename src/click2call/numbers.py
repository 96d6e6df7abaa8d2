"""Phone numbers: checking what a request sent and writing it the way each peer expects.

`parse_phone` accepts what CRMs paste (spaces, dashes, dots, brackets between digits,
a leading + or 00), refuses anything else with an `InvalidInput` naming the field, and
uses phonenumbers with the tenant's default region to tell real numbers from short ones.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

import phonenumbers

from click2call.errors import InvalidInput

_VISUAL_SEPARATORS = re.compile(r"[ \-().]")
_DIALLABLE = re.compile(r"\+?[0-9]{1,20}")
_EXTENSION = re.compile(r"[0-9]{1,16}")
_MAX_RAW_LENGTH = 40
_MAX_INTERNAL_DIGITS = 6

TrunkFormat = Literal["national", "e164"]


@dataclass(frozen=True, slots=True)
class PhoneNumber:
    """A number as written, and what phonenumbers made of it (None: an internal number)."""

    digits: str  # separators removed, leading + kept
    parsed: phonenumbers.PhoneNumber | None
    region: str  # the tenant's region the number was read in

    @property
    def is_internal(self) -> bool:
        return self.parsed is None

    @property
    def national_significant(self) -> str:
        """National form without the trunk prefix: 0502760206 → 502760206."""
        if self.parsed is None:
            return self.digits
        return str(phonenumbers.national_significant_number(self.parsed))

    @property
    def e164(self) -> str:
        if self.parsed is None:
            return self.digits
        return str(phonenumbers.format_number(self.parsed, phonenumbers.PhoneNumberFormat.E164))

    def for_trunk(self, trunk_format: TrunkFormat) -> str:
        """The digits to put in the Request-URI of a call through the trunk."""
        if self.parsed is None:
            return self.digits
        if trunk_format == "e164":
            return self.e164
        # A number of another country has no national form here: dial it as E.164.
        if phonenumbers.region_code_for_number(self.parsed) != self.region:
            return self.e164
        national = phonenumbers.format_number(self.parsed, phonenumbers.PhoneNumberFormat.NATIONAL)
        return re.sub(r"[^0-9]", "", str(national))


def _clean(field: str, raw: str) -> str:
    if len(raw) > _MAX_RAW_LENGTH:
        raise InvalidInput(field, f"longer than {_MAX_RAW_LENGTH} characters")
    digits = _VISUAL_SEPARATORS.sub("", raw)
    if digits.startswith("00"):
        digits = "+" + digits[2:]
    if not _DIALLABLE.fullmatch(digits):
        raise InvalidInput(field, "must be a phone number: digits, optionally a leading +")
    return digits


def parse_phone(field: str, raw: str, region: str, *, allow_internal: bool) -> PhoneNumber:
    """Check and normalise a phone number; short numbers are internal when `allow_internal`."""
    digits = _clean(field, raw)
    if not digits.startswith("+") and len(digits) <= _MAX_INTERNAL_DIGITS:
        if allow_internal:
            return PhoneNumber(digits, None, region)
        raise InvalidInput(field, "is too short for a phone number")
    try:
        parsed = phonenumbers.parse(digits, region)
    except phonenumbers.NumberParseException as exc:
        raise InvalidInput(field, f"is not a phone number ({exc._msg})") from exc
    if not phonenumbers.is_possible_number(parsed):
        raise InvalidInput(field, f"is not a possible phone number in region {region}")
    return PhoneNumber(digits, parsed, region)


def parse_caller_id(field: str, raw: str) -> str:
    """A caller ID to present: digits with an optional leading +, kept as the user wrote it."""
    return _clean(field, raw)


def parse_extension(field: str, raw: str) -> str:
    if not _EXTENSION.fullmatch(raw):
        raise InvalidInput(field, "must be 1 to 16 digits")
    return raw
