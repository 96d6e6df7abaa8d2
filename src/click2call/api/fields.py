"""The grammar of every request field, checked at the edge before anything is interpreted.

Each check returns the value to use or raises `InvalidInput` naming the field. The
codecs behind (SIP, AMI) refuse control characters again; this is the first lock.
"""

from __future__ import annotations

import re

from click2call.calls import Tech
from click2call.errors import InvalidInput
from click2call.webhooks.urls import MAX_URL_LENGTH, check_url

# The grammars, also published in the OpenAPI schema.
PHONE = r"^[0-9+ ()\-.]{1,40}$"
EXTENSION = r"^[0-9]{1,16}$"
CALLER_ID = r"^\+?[0-9]{1,20}$"
FOREIGNID = r"^[A-Za-z0-9_.:@/+=-]{1,64}$"
NAME = r"^[A-Za-z0-9_.-]{1,64}$"
KEY = r"^[A-Za-z0-9_-]{1,128}$"
CALLBACK_URL = rf"^https?://[!-~]{{1,{MAX_URL_LENGTH - 8}}}$"

_CONTROL = re.compile(r"[\x00-\x1f\x7f\u0080-\u009f\u2028\u2029]")
_PHONE = re.compile(PHONE, re.ASCII)
_EXTENSION = re.compile(EXTENSION, re.ASCII)
_CALLER_ID = re.compile(CALLER_ID, re.ASCII)
_FOREIGNID = re.compile(FOREIGNID, re.ASCII)
_NAME = re.compile(NAME, re.ASCII)


def _check(field: str, value: str, pattern: re.Pattern[str], rule: str) -> str:
    if _CONTROL.search(value):
        raise InvalidInput(field, "contains a control character")
    if not pattern.fullmatch(value):
        raise InvalidInput(field, rule)
    return value


def required(field: str, value: str | None) -> str:
    if value is None or value == "":
        raise InvalidInput(field, "is required")
    return value


def phone(field: str, value: str) -> str:
    return _check(field, value, _PHONE, "must be a phone number (digits, optional leading +)")


def extension(value: str) -> str:
    return _check("extension", value, _EXTENSION, "must be 1 to 16 digits")


def tech(value: str | None) -> Tech:
    if value is None or value == "":
        return Tech.SIP
    try:
        return Tech(value.lower())
    except ValueError:
        raise InvalidInput("tech", "must be 'sip' or 'pjsip'") from None


def caller_id(value: str | None) -> str | None:
    if value is None or value == "":
        return None
    return _check("outboundcid", value, _CALLER_ID, "must be digits with an optional leading +")


def foreignid(value: str | None) -> str | None:
    if value is None or value == "":
        return None
    return _check("foreignid", value, _FOREIGNID, "must be 1-64 letters, digits or _ . : @ / + = -")


def name(field: str, value: str) -> str:
    return _check(field, value, _NAME, "must be 1-64 letters, digits, '_', '.' or '-'")


def callback_url(value: str | None) -> str | None:
    if value is None or value == "":
        return None
    if _CONTROL.search(value):
        raise InvalidInput("callback_url", "contains a control character")
    try:
        return check_url(value)
    except ValueError as exc:
        raise InvalidInput("callback_url", str(exc)) from None
