"""What a history query means: its numbers read the way calls were stored.

A call stores the agent's and the destination's numbers in the form its tenant's trunk
dials them (numbers.py); a search by `phone=+972502760206` must find the call placed
with `phone=0502760206`, so search numbers go through the same reading.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from click2call.calls import CallState, Result
from click2call.errors import InvalidInput
from click2call.numbers import parse_extension, parse_phone
from click2call.settings import TenantSettings
from click2call.store.history import CallFilter


@dataclass(frozen=True, slots=True)
class Search:
    """A history query as an endpoint received it: grammar checked, numbers as written."""

    since: datetime | None = None
    until: datetime | None = None
    state: CallState | None = None
    result: Result | None = None
    extension: str | None = None
    phone: str | None = None
    destination: str | None = None
    foreignid: str | None = None


def _utc(value: datetime | None) -> datetime | None:
    return None if value is None else _as_utc(value)


def _as_utc(value: datetime) -> datetime:
    """Times without a zone are read as UTC, the zone the store keeps."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def parse_time(text: str) -> datetime:
    """An ISO 8601 time, in UTC (one without a zone is read as UTC). ValueError for text
    that is not one, and for a time whose UTC falls outside years 1-9999
    (9999-12-31T23:00-05:00 parses, and overflows as it is moved to UTC)."""
    try:
        return _as_utc(datetime.fromisoformat(text))
    except OverflowError:
        raise ValueError(f"{text!r} falls outside the calendar in UTC") from None


def call_filter(search: Search, tenant: TenantSettings | None) -> CallFilter:
    """The store's filter for `search` within `tenant` (None: every tenant, numbers as given).

    Raises InvalidInput naming the field."""
    if search.extension is not None and search.phone is not None:
        raise InvalidInput("phone", "give 'extension' or 'phone', not both")
    since, until = _utc(search.since), _utc(search.until)
    if since is not None and until is not None and until <= since:
        raise InvalidInput("until", "must be later than 'since'")
    agent = destination = None
    if search.extension is not None:
        agent = parse_extension("extension", search.extension)
    if search.phone is not None:
        agent = _stored_number("phone", search.phone, tenant, allow_internal=False)
    if search.destination is not None:
        destination = _stored_number("destination", search.destination, tenant, allow_internal=True)
    return CallFilter(
        tenant=tenant.name if tenant else None,
        since=since,
        until=until,
        state=search.state,
        result=search.result,
        agent_number=agent,
        destination=destination,
        foreignid=search.foreignid,
    )


def _stored_number(
    field: str, raw: str, tenant: TenantSettings | None, *, allow_internal: bool
) -> str:
    region = tenant.region if tenant else "IL"
    number = parse_phone(field, raw, region, allow_internal=allow_internal)
    return number.for_trunk(tenant.trunk_number_format) if tenant else number.digits
