from __future__ import annotations

import pytest

from click2call.errors import InvalidInput
from click2call.numbers import parse_caller_id, parse_extension, parse_phone


@pytest.mark.parametrize(
    ("raw", "national", "e164", "significant"),
    [
        ("0502760206", "0502760206", "+972502760206", "502760206"),
        ("050-276-0206", "0502760206", "+972502760206", "502760206"),
        ("(03) 641 1111", "036411111", "+97236411111", "36411111"),
        ("+972502760206", "0502760206", "+972502760206", "502760206"),
        ("00972502760206", "0502760206", "+972502760206", "502760206"),
    ],
)
def test_israeli_numbers(raw: str, national: str, e164: str, significant: str) -> None:
    number = parse_phone("phone", raw, "IL", allow_internal=False)
    assert number.for_trunk("national") == national
    assert number.for_trunk("e164") == e164
    assert number.national_significant == significant
    assert not number.is_internal


def test_a_foreign_number_keeps_its_country_code_on_a_national_trunk() -> None:
    number = parse_phone("destination", "+14155550123", "IL", allow_internal=False)
    assert number.for_trunk("national") == "+14155550123"


def test_short_numbers_are_internal_where_allowed() -> None:
    number = parse_phone("destination", "201", "IL", allow_internal=True)
    assert number.is_internal
    assert number.for_trunk("national") == "201"
    with pytest.raises(InvalidInput, match="invalid phone: is too short"):
        parse_phone("phone", "201", "IL", allow_internal=False)


@pytest.mark.parametrize("raw", ["05027602O6", "050\r\n2760206", "+", "1" * 41, "0502760206;x"])
def test_garbage_is_refused_naming_the_field(raw: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        parse_phone("destination", raw, "IL", allow_internal=True)
    assert caught.value.field == "destination"


def test_impossible_numbers_are_refused() -> None:
    with pytest.raises(InvalidInput, match="not a possible phone number"):
        parse_phone("destination", "0123456789012345", "IL", allow_internal=False)


def test_caller_id_and_extension() -> None:
    assert parse_caller_id("outboundcid", "036411111") == "036411111"
    assert parse_extension("extension", "200") == "200"
    with pytest.raises(InvalidInput, match="invalid extension"):
        parse_extension("extension", "20a")
