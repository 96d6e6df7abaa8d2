from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from click2call.api.history import decode_cursor, encode_cursor
from click2call.errors import InvalidInput
from click2call.search import Search, call_filter, parse_time
from click2call.settings import TenantSettings

TENANT = TenantSettings(name="default", region="IL")


def test_numbers_are_searched_in_the_form_calls_store_them() -> None:
    where = call_filter(Search(phone="+972-50-276-0206", destination="+972541234567"), TENANT)
    assert (where.agent_number, where.destination) == ("0502760206", "0541234567")
    assert where.tenant == "default"
    assert call_filter(Search(extension="200"), TENANT).agent_number == "200"


def test_times_become_utc() -> None:
    local = datetime(2026, 11, 24, 10, 0, tzinfo=timezone(timedelta(hours=2)))
    where = call_filter(Search(since=local, until=datetime(2026, 11, 25)), TENANT)
    assert where.since == datetime(2026, 11, 24, 8, 0, tzinfo=UTC)
    assert where.until == datetime(2026, 11, 25, tzinfo=UTC)


@pytest.mark.parametrize(
    ("search", "field"),
    [
        (Search(extension="200", phone="0502760206"), "phone"),
        (Search(since=datetime(2026, 1, 2), until=datetime(2026, 1, 1)), "until"),
        (Search(phone="123"), "phone"),
    ],
)
def test_contradictions_name_the_field(search: Search, field: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        call_filter(search, TENANT)
    assert caught.value.field == field


def test_cursors_round_trip_and_forgeries_are_refused() -> None:
    assert decode_cursor(encode_cursor(12345)) == 12345
    for bad in ("", "!!", "MTIz", encode_cursor(1)[:-1] + "A" * 30):
        with pytest.raises(InvalidInput):
            decode_cursor(bad)


def test_a_time_is_parsed_into_utc_and_one_past_the_calendar_is_refused() -> None:
    assert parse_time("2026-11-25T08:00:00+02:00").isoformat() == "2026-11-25T06:00:00+00:00"
    assert parse_time("2026-11-25").isoformat() == "2026-11-25T00:00:00+00:00"
    with pytest.raises(ValueError, match="falls outside the calendar in UTC"):
        parse_time("9999-12-31T23:00:00-05:00")
    with pytest.raises(ValueError, match="Invalid isoformat string"):
        parse_time("yesterday")
